"""Why the compiler chose what it chose: the cost model's report as text.

:func:`explain` turns ``Program.report`` (written by
:func:`~.compiler.compile_kernel`) into the table ``zeroskip explain`` prints:
per row band every option the cost model considered — format, dataflow,
tiles, predicted cycles — the winner and the reason, then the program's
totals against dense mode, the work balance across the PEs and whether long
rows were split across them (with the predicted cycles of both choices).
"""

from __future__ import annotations

__all__ = ["explain"]


def _percent(value, best):
    if value is None:
        return "-"
    if value == best:
        return "winner" if best is not None else "-"
    return f"+{100 * (value - best) / best:.1f} %" if best else "-"


def explain(program, *, operand=None, x=None):
    """A text report of the compiler's decisions for ``program``.

    Parameters
    ----------
    program : Program
        Compiled with :func:`~.compiler.compile_kernel` (its ``report``).
    operand : str, optional
        One line describing the right-hand operand (where it came from).
    x : array, optional
        The integer operand, for the exact cycle prediction of column mode.

    Returns
    -------
    str
    """
    report = program.report
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
    for index, band in enumerate(report.get("bands", [])):
        start, stop = band["rows"]
        lines.append("")
        lines.append(f"band {index}: rows {start}-{stop - 1} ({stop - start} rows, "
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
        lines.append(f"work spread: CV {program.work_cv:.3f} over the PEs; "
                     f"{balance['long_rows']} row(s) longer than a PE's share "
                     f"(CV {balance['cv_whole_rows']:.3f} with whole rows, "
                     f"{balance['cv_split_rows']:.3f} if split)")
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
    return "\n".join(lines) + "\n"


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
