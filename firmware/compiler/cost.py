"""The cost model: predicted cycles of every candidate, the choice and its reasons."""

from __future__ import annotations

import dataclasses
import heapq

import numpy as np
import scipy.sparse

from zeroskip.core import formatspec
from zeroskip.core.isa import Format
from zeroskip.firmware import formats
from zeroskip.firmware.compiler.bands import row_cap
from zeroskip.firmware.compiler.plans import _column_tiles, _plan_generic, _split_rows
from zeroskip.firmware.compiler.settings import DENSE_MARGIN
from zeroskip.firmware.compiler.split import _pieces, _plan_split
from zeroskip.firmware.compiler.tiles import _emit
from zeroskip.firmware.cycles import check_dense_cycles
from zeroskip.firmware.formats import dense_span
from zeroskip.firmware.program import Program


def _option(plan, operand, epi, config):
    """The predicted cost of one candidate: its report entry and per-column cycles."""
    count, matrix = operand.count, operand.columns > 0
    patterns = operand.column_patterns if _spec(plan.fmt).column_mode else None
    per_column = plan.run_cycles(patterns, count, epi.tail, config)
    total = int(_pass_cycles(plan, per_column, patterns, count, epi, config).sum()) \
        + plan.overhead(count, config, epi, matrix)
    note = ""
    if plan.split is not None and plan.split["cycles_split_rows"] is not None:
        info = plan.split
        if plan.splits_rows:
            note = (f"{info['long_rows']} long row(s) split into {info['pieces']} pieces "
                    f"(whole rows: {info['cycles_whole_rows']} cycles)")
        else:
            note = f"rows kept whole (split rows: {info['cycles_split_rows']} cycles)"
    return {"format": _spec(plan.fmt).name, "dataflow": plan.dataflow, "cycles": total,
            "tiles": plan.tiles(count, config, epi, matrix), "note": note}, per_column


def _pass_cycles(plan, per_column, patterns, count, epi, config):
    """The cycles of each pass (the pass rule of :mod:`zeroskip.core.timing`): the right-hand
    columns in consecutive groups of ``products_per_lane`` (the tiles hold whole
    passes); a row-format pass costs one column, a column-mode pass the union of
    its columns' nonzero activations."""
    k = config.products_per_lane
    if k == 1 or count == 0:
        return per_column
    if patterns is None:
        return per_column[::k]
    union = np.logical_or.reduceat(np.asarray(patterns) != 0, np.arange(0, count, k), axis=1)
    return plan.run_cycles(union.astype(np.int64), union.shape[1], epi.tail, config)


def _spec(fmt):
    return formats.get(fmt).spec


def _rank(fmt):
    """On equal predicted cycles, the format of the lower preference wins (fewer words)."""
    return _spec(fmt).preference


def _of_dataflow(fmts, dataflow):
    """The first of ``fmts`` that runs ``dataflow``, or None."""
    return next((f for f in fmts if _spec(f).dataflow == dataflow), None)


def _choose(plans, operand, epi, config):
    """Pick the plan(s) of one band: ``([(plan, right-hand columns)], report)``."""
    count = operand.count
    matrix = operand.columns > 0
    options, per_column = [], {}
    for fmt, plan in plans.items():
        option, cycles = _option(plan, operand, epi, config)
        options.append(option)
        per_column[fmt] = cycles
    order = sorted(plans, key=lambda f: (next(o["cycles"] for o in options
                                             if o["format"] == _spec(f).name), _rank(f)))
    winner = order[0]
    ks = list(range(count))
    choice = [(plans[winner], ks)]
    label = _spec(winner).name
    best = next(o["cycles"] for o in options if o["format"] == label)
    split = None
    row_formats = [f for f in order if not _spec(f).column_mode]
    by_columns = _of_dataflow(plans, formatspec.COLUMN)
    if (operand.column_patterns is not None and count > 1 and by_columns is not None
            and row_formats and config.products_per_lane == 1):
        # Per right-hand column: column mode or the best row format.
        row = row_formats[0]
        row_cycles = per_column[row]
        column_cycles = per_column[by_columns]
        column = [k for k in ks if column_cycles[k] < row_cycles[k]]
        rows = [k for k in ks if column_cycles[k] >= row_cycles[k]]
        if column and rows:
            mixed = (int(row_cycles[rows].sum()) + int(column_cycles[column].sum())
                     + plans[row].overhead(len(rows), config, epi, matrix)
                     + plans[by_columns].overhead(len(column), config, epi, matrix))
            if mixed < best:
                choice = [(plans[row], rows), (plans[by_columns], column)]
                label = f"{_spec(row).name}+{_spec(by_columns).name}"
                best = mixed
                split = {_spec(row).name: rows, _spec(by_columns).name: column}
                options.append({"format": label, "dataflow": "row+column", "cycles": mixed,
                                "tiles": plans[row].tiles(len(rows), config, epi, matrix)
                                + plans[by_columns].tiles(len(column), config, epi, matrix),
                                "note": f"{len(column)} of {count} right-hand columns in "
                                        f"column mode"})
    reason = None
    dense_fmt = _of_dataflow(plans, formatspec.DENSE_FLOW)
    if dense_fmt is not None and label != _spec(dense_fmt).name:
        dense = next(o["cycles"] for o in options if o["format"] == _spec(dense_fmt).name)
        if dense <= best * (1 + DENSE_MARGIN):
            saved = 100 * (dense - best) / dense if dense else 0.0
            reason = (f"{_spec(dense_fmt).name}: sparsity does not pay here — {label} would "
                      f"save only {saved:.2f} % of dense mode's {dense} predicted cycles "
                      f"(break-even {100 * DENSE_MARGIN:g} %), and dense mode decodes no "
                      f"indices")
            choice, label, best, split = ([(plans[dense_fmt], ks)], _spec(dense_fmt).name,
                                          dense, None)
    report = {"options": options, "winner": label, "cycles": best,
              "reason": reason or _reason(options, label)}
    if split is not None:
        report["columns"] = split
    return choice, report


def _reason(options, winner):
    ranked = sorted(options, key=lambda o: o["cycles"])
    best = next(o for o in options if o["format"] == winner)
    others = [o for o in ranked if o["format"] != winner]
    if not others:
        return f"{winner} is the only option"
    runner = others[0]
    if runner["cycles"] == best["cycles"]:
        text = (f"{winner} ties with {runner['format']} at {best['cycles']} predicted cycles "
                f"and needs fewer memory words")
    else:
        gain = 100 * (runner["cycles"] - best["cycles"]) / runner["cycles"]
        text = (f"{winner} predicts {best['cycles']} cycles, {gain:.1f} % fewer than the "
                f"next option, {runner['format']} ({runner['cycles']})")
    dense = next((o for o in options if o["dataflow"] == formatspec.DENSE_FLOW), None)
    if best["dataflow"] == formatspec.DENSE_FLOW:
        text += "; at this density the sparse formats stream nearly every entry anyway"
    elif dense is not None and dense is not runner:
        ratio = dense["cycles"] / best["cycles"] if best["cycles"] else 0.0
        text += f"; dense mode would take {dense['cycles']} ({ratio:.1f}x)"
    return text


def _consider_split(ctx, whole, band):
    """The CSR plan of ``band``: ``whole`` or, if the cost model (or ``split_rows=True``)
    prefers it, the plan that splits the long rows; its ``split`` records why."""
    config, operand, epi = ctx.config, ctx.operand, ctx.epi
    info = _split_record(band, ctx.counts, config)
    whole.split = info
    if not info["long_rows"]:
        return whole
    if not config.reduce:
        info["reason"] = "the hardware has no scatter/reduce network (reduce=false)"
    elif ctx.split_rows is False:
        info["reason"] = "splitting is off (split_rows=False)"
    elif len(band[3]) != 1:
        info["reason"] = "x spans several column tiles (rows are split only in blocks with one)"
    if info["reason"]:
        return whole
    split = _plan_split(ctx, band)
    if split is None:
        info["reason"] = ("the split rows' descriptors and instructions do not fit the row "
                          "and instruction memories")
    elif not split.splits_rows:
        info["reason"] = "the work balances with every long row's pieces on one lane"
    if info["reason"]:
        return whole
    cycles_whole = _option(whole, operand, epi, config)[0]["cycles"]
    cycles_split = _option(split, operand, epi, config)[0]["cycles"]
    info.update(cycles_whole_rows=cycles_whole, cycles_split_rows=cycles_split)
    if ctx.split_rows is True or cycles_split < cycles_whole:
        reduces = [block.reduce for block in split.blocks if block.reduce is not None]
        info.update(split=True, long_rows=sum(r.long_rows for r in reduces),
                    pieces=sum(r.pieces for r in reduces))
        split.split = info
        return split
    info["reason"] = f"splitting predicts {cycles_split} cycles, whole rows {cycles_whole}"
    return whole


def _band_work(band, counts):
    """Work of each row of ``band``: ``max(nnz, 1)`` tokens per active column tile."""
    start, stop, _assign, active = band
    return np.maximum(counts[start:stop][:, active], 1).sum(axis=1)


def _split_record(band, counts, config, reason=""):
    """A band's split record before any decision: its long rows and their pieces."""
    pieces = _pieces(_band_work(band, counts), config.pes)
    long = pieces > 1
    return {"long_rows": int(np.count_nonzero(long)), "pieces": int(pieces[long].sum()),
            "split": False, "cycles_whole_rows": None, "cycles_split_rows": None,
            "reason": reason}


def _balance(bands, counts, config, splits):
    """How evenly whole rows spread, how much splitting the long rows evens out the
    work, and whether the program splits them (``splits``: per band, the split
    record of its CSR plan)."""
    lanes = config.pes
    whole = np.zeros(lanes)
    split = np.zeros(lanes)
    for band in bands:
        work = _band_work(band, counts).astype(np.float64)
        if not len(work):
            continue
        whole += np.sort(_loads(work, lanes))
        pieces = _pieces(work, lanes)
        split += np.sort(_loads(np.repeat(work / pieces, pieces), lanes))

    def cv(load):
        return float(load.std() / load.mean()) if load.mean() else 0.0

    def total(key, infos):
        values = [info[key] for info in infos if info[key] is not None]
        return sum(values) if values else None

    done = [info for info in splits if info["split"]]
    kept = [info for info in splits if info["long_rows"] and not info["split"]]
    compared = [info for info in splits if info["cycles_split_rows"] is not None]
    notes = []
    if done:
        notes.append(f"{sum(i['long_rows'] for i in done)} long row(s) split into "
                     f"{sum(i['pieces'] for i in done)} pieces across the lanes and summed "
                     f"with REDUCE: {total('cycles_split_rows', done)} predicted cycles "
                     f"instead of {total('cycles_whole_rows', done)} with whole rows")
    if kept:
        reasons = list(dict.fromkeys(info["reason"] for info in kept))
        notes.append(("elsewhere rows are kept whole: " if done else
                      "rows are not split across lanes: ") + "; ".join(reasons))
    if not notes:
        notes.append("no row is longer than a lane's share of its band: nothing to split")
    return {"split": bool(done), "long_rows": sum(info["long_rows"] for info in splits),
            "pieces": sum(info["pieces"] for info in splits),
            "cv_whole_rows": round(cv(whole), 4), "cv_split_rows": round(cv(split), 4),
            "cycles_whole_rows": total("cycles_whole_rows", compared),
            "cycles_split_rows": total("cycles_split_rows", compared),
            "note": "; ".join(notes)}


def _loads(work, lanes):
    heap = [(0.0, p) for p in range(lanes)]
    loads = np.zeros(lanes)
    for w in np.sort(work)[::-1].tolist():
        load, p = heapq.heappop(heap)
        loads[p] = load + w
        heapq.heappush(heap, (load + w, p))
    return loads


def _dense_cycles(rows, cols, width, config, epi, operand):
    """Predicted cycles of dense mode for ``rows`` x ``cols`` (column tiles of ``width``),
    exactly as a program compiled with ``fmt="dense"`` would run.

    A dense lane streams every entry of its rows, so a tile's cycles depend on
    its shape only: dense mode's blocks hold the same number of rows (the last
    fewer), and its column tiles the same width (the last narrower). The
    cycles are those of one all-zero block of each size, over one column tile
    of each kind, times how often each occurs; the work does not grow with
    the matrix. The result passes :func:`~zeroskip.firmware.cycles.check_dense_cycles`
    (never below ``rows x cols`` products per right-hand column at the array's
    rate).
    """
    if rows == 0:
        return 0
    tiles = _column_tiles(cols, width)
    kinds = [(tiles[0][1] - tiles[0][0], len(tiles) - 1)] if len(tiles) > 1 else []
    kinds.append((tiles[-1][1] - tiles[-1][0], 1))
    shape = []   # (x_start, x_stop) of the representative tiles
    for tile_width, _ in kinds:
        start = shape[-1][1] if shape else 0
        shape.append((start, start + tile_width))
    spans = np.array([dense_span(w, config) for w, _ in kinds], dtype=np.int64)
    cap = row_cap(config, header=0)
    probe = min(rows, config.pes * cap)
    first, _ = next(_split_rows(np.arange(probe), np.full(probe, int(spans.sum())),
                                np.tile(spans, (probe, 1)), cap, config))
    size = len(first)
    sizes = [(size, rows // size)] + ([(rows % size, 1)] if rows % size else [])
    count, matrix = operand.count, operand.columns > 0
    total = 0
    for block_rows, repeat in sizes:
        zero = scipy.sparse.csr_matrix((block_rows, shape[-1][1]), dtype=np.int64)
        block_epi = epi if epi.bias is None else dataclasses.replace(
            epi, bias=np.zeros(block_rows, dtype=np.int64))
        plan = _plan_generic(Format.DENSE, np.arange(block_rows), zero, shape, config,
                             block_epi, None)
        assert len(plan.blocks) == 1
        emitted = []
        _emit(plan, list(range(count)), block_epi, config, matrix, emitted,
              np.zeros(config.pes, dtype=np.int64))
        program = Program(config=config, shape=zero.shape, nnz=0, tiles=emitted,
                          kernel=operand.kernel, rhs_columns=operand.columns)
        per_set = len(plan.blocks[0].sets)
        for index, tile in enumerate(emitted):
            total += repeat * kinds[index % per_set][1] * program.tile_cycles(tile)
    return check_dense_cycles(total, rows, cols, count, config)
