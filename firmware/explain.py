"""Why the compiler chose what it chose, and where the cycles go, as text.

:func:`explain` turns ``Program.report`` (written by
:func:`~.compiler.compile_kernel`) into the table ``zeroskip explain`` prints:
per band (a run of consecutive rows that get one storage format) every option
the cost model considered — format, dataflow, tiles, predicted cycles — the
winner and the reason, then the program's totals against dense mode, the
work balance across the PEs and whether long rows were split across them.
Last comes :func:`losses`: the PE cycles of a run on the ISA model split into
useful work and each loss (empty rows, waiting for x, uneven work, per-tile
overhead), the biggest named in plain words.
"""

from __future__ import annotations

import numpy as np

from zeroskip.core import timing
from zeroskip.core.isa import Format, Opcode
from zeroskip.firmware.asm import decode
from zeroskip.firmware.program import lane_balance

__all__ = ["explain", "lane_balance_lines", "losses"]

#: The losses :func:`losses` reports: key, label, and what it means in plain words.
LOSSES = (
    ("work", "useful work", "one stored nonzero per PE cycle"),
    ("empty_rows", "empty rows", "a PE spends a cycle on each row without nonzeros (and "
                                 "on zeros a format stores)"),
    ("gather_stalls", "waiting for x", "PEs asked for the same bank of the x memory in one "
                                       "cycle and all but one waited (gather stalls)"),
    ("scatter_stalls", "waiting to sum split rows", "PEs waited for the bus that adds the "
                                                     "pieces of split rows (scatter stalls)"),
    ("imbalance", "uneven work", "PEs sat idle while the busiest PE finished its rows"),
    ("overhead", "per-tile overhead", "fixed cycles to start every instruction of every "
                                      "tile"),
)


def _percent(value, best):
    if value is None:
        return "-"
    if value == best:
        return "winner" if best is not None else "-"
    return f"+{100 * (value - best) / best:.1f} %" if best else "-"


def explain(program, *, operand=None, x=None, run=None):
    """A text report of the compiler's decisions for ``program``.

    Parameters
    ----------
    program : Program
        Compiled with :func:`~.compiler.compile_kernel` (its ``report``).
    operand : str, optional
        One line describing the right-hand operand (where it came from).
    x : array, optional
        The integer operand, for the exact cycle prediction of column mode.
    run : callable, optional
        ``run(program, x)`` returns the counters of a run of ``program`` on
        the ISA model (``zeroskip.sim.backends.model_counters``); ``x`` is the
        operand, or all ones without one. The report ends with the loss table
        of that run (:func:`losses`), or says it has none without ``run``.
        Running programs is the host driver's job, a layer above this one.

    Returns
    -------
    str
    """
    report = program.report
    lines = _decisions(program, report, operand=operand, x=x)
    lines += [""] + lane_balance_lines(program.lane_balance())
    lines += [""] + _loss_lines(program, x, run)
    return "\n".join(lines) + "\n"


def _decisions(program, report, *, operand, x):
    rows, cols = program.shape
    c = program.config
    density = program.nnz / (rows * cols) if rows * cols else 0.0
    lines = [f"explain {program.name}: {rows} x {cols}, {program.nnz} nonzeros "
             f"({100 * density:.2f} % dense)"]
    if operand:
        lines.append(f"operand: {operand}")
    kernel = program.kernel
    shape = (f"{program.rhs_columns} right-hand column(s)" if program.is_matrix
             else "a right-hand vector")
    lines.append(f"kernel: {kernel} ({shape}; "
                 + ("column mode allowed where activations are zero)" if kernel in
                    ("spmspv", "spmspm") else "every activation assumed nonzero)"))
    lines.append(f"hardware: {c.pes} PEs, {c.x_banks} x banks, formats "
                 f"{', '.join(c.formats)}; format requested: "
                 f"{report.get('format_request', 'auto')}")
    if report.get("pruned"):
        n, m = report.get("nm", (2, 4))
        lines.append(f"pruned to {n}:{m}: {report['pruned']} entries removed")
    bands = report.get("bands", [])
    if bands:
        lines.append("The cost model picks a storage format per band: a run of consecutive "
                     "rows stored together (rows count from 1).")
    for index, band in enumerate(bands):
        start, stop = band["rows"]
        lines.append("")
        lines.append(f"band {index + 1}: rows {start + 1}-{stop} ({stop - start} rows, "
                     f"{band['nnz']} nonzeros)")
        header = f"  {'option':<10} {'dataflow':<10} {'tiles':>5} {'predicted cycles':>17} " \
                 f"{'vs winner':>10}  note"
        lines.append(header)
        best = band["cycles"]
        ordered = sorted(band["options"], key=lambda o: (o["cycles"] is None,
                                                         o["cycles"] or 0))
        for option in ordered:
            cycles = "-" if option["cycles"] is None else str(option["cycles"])
            mark = "winner" if option["format"] == band["winner"] else \
                _percent(option["cycles"], best)
            lines.append(f"  {option['format']:<10} {option['dataflow']:<10} "
                         f"{option['tiles']:>5} {cycles:>17} {mark:>10}  "
                         f"{option.get('note', '')}".rstrip())
        lines.append(f"  -> {band['winner']}: {band['reason']}")
        columns = band.get("columns")
        if columns:
            for name, ks in columns.items():
                lines.append(f"     {name}: right-hand columns {_ranges(ks)}")
    lines.append("")
    total = program.predicted_cycles(x)
    summary = (f"program: {program.format_label} ({program.dataflow_label} dataflow), "
               f"{len(program.tiles)} tile(s), predicted {total} cycles")
    dense = program.dense_cycles
    if dense is not None and total:
        summary += f"; dense mode {dense} cycles (speedup {dense / total:.2f}x over dense)"
    lines.append(summary)
    balance = report.get("balance")
    if balance:
        lines.append(f"work spread over the PEs: {_spread(program.lane_work)}; "
                     f"{balance['long_rows']} row(s) longer than a PE's share (spread "
                     f"{100 * balance['cv_whole_rows']:.1f} % with whole rows, "
                     f"{100 * balance['cv_split_rows']:.1f} % if split; spread = standard "
                     f"deviation / mean of the PEs' work)")
        split = "yes" if balance.get("split") else "no"
        whole_cycles = balance.get("cycles_whole_rows")
        split_cycles = balance.get("cycles_split_rows")
        if whole_cycles is not None and split_cycles is not None:
            lines.append(f"  rows split across the PEs: {split} (predicted {split_cycles} cycles "
                         f"with split rows, {whole_cycles} with whole rows in the bands that have "
                         f"long rows)")
        else:
            lines.append(f"  rows split across the PEs: {split}")
        lines.append(f"  {balance['note']}")
    return lines


#: Lanes up to which a balance line lists every lane's work (else busiest and mean).
_LIST_LANES = 16


def lane_balance_lines(balance):
    """The lane balance of :meth:`~.program.Program.lane_balance` as text: the
    program's, then per tile (numbered as in the listing) and, when a tile runs
    ``SPMV`` of different descriptors, per ``SPMV``."""
    lines = [f"lane balance (an SPMV lasts as long as its busiest PE; balance = the "
             f"busiest PE's work / the mean, 1.00 = even): {_work_text(balance)}"]
    for tile in balance["tiles"]:
        lines.append(f"  tile {tile['tile']}: {_work_text(tile)}")
        if len(tile["spmvs"]) > 1:
            for spmv in tile["spmvs"]:
                lines.append(f"    SPMV {spmv['format'] or '-'} x{spmv['count']}: "
                             f"{_work_text(spmv)}")
    return lines


def _work_text(entry):
    work = entry["lane_work"]
    mean = sum(work) / len(work) if work else 0.0
    if len(work) <= _LIST_LANES:
        detail = "work per PE " + " ".join(str(v) for v in work)
    else:
        busiest = max(range(len(work)), key=work.__getitem__)
        detail = f"busiest PE {busiest} {work[busiest]}, mean {mean:.1f}"
    return f"balance {entry['balance']:.2f} ({detail})"


def _spread(work):
    busiest = lane_balance(work)
    work = np.asarray(work, dtype=np.float64)
    mean = work.mean() if len(work) else 0.0
    if not mean:
        return "no work"
    return (f"the busiest PE has {100 * (busiest - 1):.1f} % more than the "
            f"average (spread {100 * work.std() / mean:.1f} %)")


def _overhead_cycles(program):
    """Fixed cycles of every instruction run (timing's per-instruction overheads)."""
    cycles = 0
    for tile in program.tiles:
        for word in tile.code:
            opcode, args = decode(int(word))
            if opcode is Opcode.SPMV:
                cycles += timing.SPMV_OVERHEAD
                if Format(args["fmt"]) is Format.CSC:
                    cycles += timing.CSC_OVERHEAD
            elif opcode is Opcode.MOVE:
                # The PEs idle while X is written: all of a MOVE is overhead.
                cycles += timing.move_cycles(args["count"], program.config.pes)
            elif opcode is not Opcode.REDUCE:
                cycles += timing.INSN_OVERHEAD
            if opcode in (Opcode.HALT, None):
                break
    return cycles


def losses(program, counters):
    """Split the PE cycles of a run (``pes x cycles``) into work and losses.

    Parameters
    ----------
    program : Program
    counters : dict
        The run's performance counters (``cycles``, ``pe_busy``,
        ``gather_stalls``, ``scatter_stalls``).

    Returns
    -------
    dict
        PE cycles per key of :data:`LOSSES`, plus ``total``. ``work`` is the
        PE busy count; ``empty_rows`` the lane tokens that carry no nonzero;
        the stalls are the counters; ``overhead`` is ``pes`` times the fixed
        cycles of the instructions; ``imbalance`` is what remains (idle PEs
        waiting for the busiest, including the sums of split rows).
    """
    pes = program.config.pes
    cycles = int(counters["cycles"])
    total = pes * cycles
    work = int(sum(int(v) for v in counters.get("pe_busy", [])))
    tokens = int(np.sum(program.lane_work))
    empty = max(0, tokens - int(np.sum(program.lane_nnz)))
    parts = {
        "work": work,
        "empty_rows": empty,
        "gather_stalls": int(counters.get("gather_stalls", 0)),
        "scatter_stalls": int(counters.get("scatter_stalls", 0)),
        "overhead": min(total, pes * _overhead_cycles(program)),
    }
    parts["imbalance"] = max(0, total - sum(parts.values()))
    parts["total"] = total
    return parts


def _loss_lines(program, x, run):
    if run is None:
        return ["where the PE cycles go: not measured (no run of the program)"]
    rows, cols = program.shape
    if x is None:
        shape = (cols, program.rhs_columns) if program.is_matrix else cols
        x = np.ones(shape, dtype=np.int64)
    counters = run(program, x)
    parts = losses(program, counters)
    total = parts["total"]
    if not total:
        return ["where the PE cycles go: the program runs no cycles"]
    pes, cycles = program.config.pes, int(counters["cycles"])
    lines = [f"where the PE cycles go (a run on the ISA model: {pes} PEs x {cycles} cycles = "
             f"{total} PE cycles):"]
    width = max(len(label) for _, label, _ in LOSSES)
    for key, label, meaning in LOSSES:
        lines.append(f"  {label:<{width}} {parts[key]:>9} {100 * parts[key] / total:5.1f} %"
                     f"  {meaning}")
    ranked = sorted((parts[key], label, key) for key, label, _ in LOSSES[1:] if parts[key])
    if ranked:
        value, label, key = ranked[-1]
        lines.append(f"biggest loss: {label}, {100 * value / total:.1f} % of the PE cycles. "
                     + _advice(key, program))
    else:
        lines.append("no loss: every PE cycle did useful work")
    return lines


def _advice(key, program):
    if key == "imbalance":
        long_rows = program.report.get("balance", {}).get("long_rows", 0)
        if long_rows:
            return (f"{long_rows} row(s) are longer than a PE's share; --split-rows yes "
                    f"spreads them over the PEs.")
        return ("The PEs got unequal numbers of cycles of rows (empty rows count too); "
                "more PEs make it worse, fewer PEs or a reordering of the rows better.")
    return _ADVICE[key]


_ADVICE = {
    "empty_rows": "Rows without nonzeros still cost a cycle each; in long empty stretches "
                  "a format that skips them (COO: --formats csr,coo) avoids that.",
    "gather_stalls": "More x banks (--x-banks) make two PEs asking for the same bank rarer.",
    "scatter_stalls": "Fewer split rows (--split-rows no) or fewer PEs per row would wait less.",
    "overhead": "The matrix is small for this many tiles or PEs: fewer PEs or bigger lane "
                "memories (--nz-depth, --row-depth) mean fewer, longer tiles.",
}


def _ranges(values):
    values = sorted(values)
    parts = []
    start = prev = None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = v
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)
