"""Row bands: the column-tile width and the blocks of rows that fit the lanes'
row and nonzero memories, spread over the lanes by work."""

from __future__ import annotations

import heapq

import numpy as np


def _lpt(work, lanes, cap):
    """Longest processing time first, at most ``cap`` rows per lane."""
    assign = np.empty(len(work), dtype=np.int64)
    heap = [(0, p) for p in range(lanes)]
    counts = [0] * lanes
    work_list = work.tolist()
    for r in np.argsort(-work, kind="stable").tolist():
        load, p = heapq.heappop(heap)
        assign[r] = p
        counts[p] += 1
        if counts[p] < cap:
            heapq.heappush(heap, (load + work_list[r], p))
    return assign


def row_cap(config, header=1):
    """Rows one lane holds in one tile: its ``ptr`` memory's ``row_depth`` words less
    ``header`` descriptor words, and at most one batch slot of its ``out`` memory
    (:attr:`~zeroskip.core.config.AcceleratorConfig.row_slot_depth`)."""
    return min(config.row_depth - header, config.row_slot_depth)


def _column_width(a, config):
    """Widest column tile (at most one batch slot of X,
    :attr:`~zeroskip.core.config.AcceleratorConfig.x_slot_depth`) in which no row
    exceeds ``nz_depth``."""
    width = config.x_slot_depth
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    while width > config.nz_depth:
        if a.nnz == 0:
            break
        # Entries are sorted by row and column, so each (row, tile) is one run.
        keys = rows * (a.shape[1] // width + 1) + a.indices // width
        edges = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
        if np.diff(edges).max() <= config.nz_depth:
            break
        width //= 2
    return width


def _blocks(counts, config):
    """Split the rows into blocks.

    Yields ``(start, stop, lane of each row, active column tiles)``: the rows
    ``start:stop`` fit the lanes' row and nonzero memories once spread.
    """
    rows, n_ct = counts.shape
    lanes, cap = config.pes, row_cap(config)
    cumulative = np.vstack([np.zeros((1, n_ct), dtype=np.int64), np.cumsum(counts, axis=0)])
    start = 0
    while start < rows:
        stop = min(rows, start + lanes * cap)
        limits = cumulative[start] + lanes * config.nz_depth
        for ct in range(n_ct):
            stop = min(stop, int(np.searchsorted(cumulative[:, ct], limits[ct], "right")) - 1)
        stop = max(stop, start + 1)
        while True:
            block = counts[start:stop]
            active = block.any(axis=0)
            if not active.any():
                active[0] = True
            work = np.maximum(block[:, active], 1).sum(axis=1)
            assign = _lpt(work, lanes, cap)
            per_lane = np.zeros((lanes, n_ct), dtype=np.int64)
            np.add.at(per_lane, assign, block)
            worst = int(per_lane.max())
            if worst <= config.nz_depth or stop - start == 1:
                break
            shrink = max(1, (stop - start) * config.nz_depth // worst * 15 // 16)
            stop = start + min(stop - start - 1, shrink)
        yield start, stop, assign, np.flatnonzero(active)
        start = stop


def _ranges(starts, lengths):
    """Concatenate ``arange(s, s + n)`` for every pair."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(total)


def _bands(counts, config, band_rows):
    bands = []
    for start, stop, assign, active in _blocks(counts, config):
        if band_rows is None or stop - start <= band_rows:
            bands.append((start, stop, assign, active))
            continue
        cap = row_cap(config)
        for first in range(start, stop, band_rows):
            last = min(stop, first + band_rows)
            block = counts[first:last]
            sub_active = block.any(axis=0)
            if not sub_active.any():
                sub_active[0] = True
            work = np.maximum(block[:, sub_active], 1).sum(axis=1)
            bands.append((first, last, _lpt(work, config.pes, cap),
                          np.flatnonzero(sub_active)))
    return bands
