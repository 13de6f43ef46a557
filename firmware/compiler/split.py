"""Split rows: CSR blocks whose long rows are cut into pieces across the lanes and
summed with ``REDUCE``."""

from __future__ import annotations

import numpy as np

from zeroskip.core import timing
from zeroskip.core.isa import Format, route_word
from zeroskip.firmware.compiler.bands import _lpt, _ranges
from zeroskip.firmware.compiler.gather import _bank_order
from zeroskip.firmware.compiler.plans import _Block, _Plan, _Reduce, _row_set, _whole_block


def _pieces(work, lanes):
    """Pieces each row is cut into: ``ceil(work / fair share)``, so 1 unless the row
    is longer than a lane's fair share of the block's work (at least 1)."""
    work = np.asarray(work, dtype=np.int64)
    return -(-work * lanes // max(int(work.sum()), lanes))


def _plan_split(ctx, band):
    """CSR for ``band`` (a single column tile) with the long rows split across lanes,
    or ``None`` when the split rows do not fit the memories."""
    start, stop, _assign, active_cts = band
    blocks = _split_blocks(ctx, np.arange(start, stop), int(active_cts[0]))
    return None if blocks is None else _Plan(Format.CSR, blocks)


def _split_blocks(ctx, rows, ct):
    """:func:`_split_block` for ``rows``, halved until every part fits (``None``
    if a single row does not)."""
    block = _split_block(ctx, rows, ct)
    if block is not None:
        return [block]
    if len(rows) == 1:
        return None
    middle = len(rows) // 2
    blocks = []
    for part in (rows[:middle], rows[middle:]):
        found = _split_blocks(ctx, part, ct)
        if found is None:
            return None
        blocks += found
    return blocks


def _split_block(ctx, rows, ct):
    """One block of ``rows`` (column tile ``ct``) with its long rows split, or ``None``
    if it does not fit the lanes' memories or the instruction memory.

    Rows longer than a lane's fair share are cut into contiguous runs of
    their nonzeros of about equal size; rows and pieces go to lanes by
    longest-processing-time-first. The lane with a row's first piece owns
    the row; a lane's pieces of one row merge into one local row. Each lane
    stores its own rows first, then its helper pieces; its ``ptr`` image
    holds the main CSR descriptor, the route list at
    ``route_base = 1 + n_max`` and, when the tile adds a bias or applies the
    epilogue, the finishing descriptor of ``n_own`` empty rows at
    ``finish_base = route_base + 2 + h_max``.
    """
    a, counts, starts, config, epi = ctx.a, ctx.counts, ctx.starts, ctx.config, ctx.epi
    lanes, cap = config.pes, config.row_depth - 1
    lengths = counts[rows, ct]
    work = np.maximum(lengths, 1)
    pieces = _pieces(work, lanes)
    long = pieces > 1
    if not long.any():
        # A part of a band halved to fit: whole rows.
        if len(rows) > lanes * cap:
            return None
        assign = _lpt(work, lanes, cap)
        if np.bincount(assign, weights=lengths, minlength=lanes).max() > config.nz_depth:
            return None
        return _whole_block(ctx, Format.CSR, [rows[assign == p] for p in range(lanes)], [ct])
    # Items: whole rows and the pieces of the long rows.
    item_row = np.repeat(np.arange(len(rows)), pieces)
    piece = np.arange(len(item_row)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    k, n = pieces[item_row], lengths[item_row]
    item_start = starts[rows, ct][item_row] + n * piece // k
    item_len = starts[rows, ct][item_row] + n * (piece + 1) // k - item_start
    if len(item_row) > lanes * cap:
        return None
    assign = _lpt(np.maximum(item_len, 1), lanes, cap)
    owner = assign[piece == 0]
    helper = assign != owner[item_row]
    # Local rows, lane by lane: own rows first, then helper pieces; a lane's
    # items of one row merge.
    order = np.lexsort((piece, item_row, helper, assign))
    lane_of, row_of = assign[order], item_row[order]
    fresh = np.r_[True, (lane_of[1:] != lane_of[:-1]) | (row_of[1:] != row_of[:-1])]
    local_id = np.cumsum(fresh) - 1
    lr_lane, lr_row, lr_helper = lane_of[fresh], row_of[fresh], helper[order][fresh]
    lr_len = np.bincount(local_id, weights=item_len[order]).astype(np.int64)
    lr_start = np.cumsum(lr_len) - lr_len
    entries = _ranges(item_start[order], item_len[order])
    if np.bincount(lr_lane, weights=lr_len, minlength=lanes).max() > config.nz_depth:
        return None
    n_local = np.bincount(lr_lane, minlength=lanes)
    n_own = np.bincount(lr_lane[~lr_helper], minlength=lanes)
    helpers = n_local - n_own
    if not helpers.any():
        own = [rows[lr_row[lr_lane == p]] for p in range(lanes)]
        return _whole_block(ctx, Format.CSR, own, [ct])
    # Fit: the three descriptors and the instructions of one column.
    n_max, h_max = int(n_local.max()), int(helpers.max())
    route_base = 1 + n_max
    finish_base = route_base + 2 + h_max if epi.tail else None
    ptr_words = route_base + 2 + h_max + (1 + int(n_own.max()) if epi.tail else 0)
    per_column = 3 if epi.tail else 2
    if (ptr_words > config.row_depth
            or (config.imem_depth - 1 - int(epi.applied)) // per_column < 1):
        return None
    lane_first = np.r_[0, np.cumsum(n_local)[:-1]]
    local_index = np.arange(len(lr_lane)) - lane_first[lr_lane]
    owner_row = np.zeros(len(rows), dtype=np.int64)
    owner_row[lr_row[~lr_helper]] = local_index[~lr_helper]
    # Own rows first, then the helper pieces (the scatter bus takes one sum
    # per cycle, so their order does not matter).
    perms = [np.r_[np.flatnonzero((lr_lane == p) & ~lr_helper),
                   np.flatnonzero((lr_lane == p) & lr_helper)].astype(np.int64)
             for p in range(lanes)]
    parts = [(lr_len[perm], entries[_ranges(lr_start[perm], lr_len[perm])]) for perm in perms]
    x_start = ct * ctx.width
    x_stop = min(a.shape[1], x_start + ctx.width)
    if ctx.bank_aware:
        _, parts = _bank_order(parts, a, x_start, config, reorder_rows=False)
    image_set = _row_set(Format.CSR, parts, a, x_start, x_stop, config)
    destinations = []
    for p, (image, perm) in enumerate(zip(image_set.images, perms, strict=True)):
        routed = perm[n_own[p]:]
        lanes_to = owner[lr_row[routed]]
        destinations.append(lanes_to)
        routes = [route_word(config, int(q), int(r))
                  for q, r in zip(lanes_to, owner_row[lr_row[routed]], strict=True)]
        size = route_base + 2 + helpers[p] if finish_base is None else \
            finish_base + 1 + n_own[p]
        ptr = np.zeros(size, dtype=np.uint32)
        ptr[:len(image.ptr)] = image.ptr
        ptr[route_base:route_base + 2 + helpers[p]] = [helpers[p], n_own[p]] + routes
        if finish_base is not None:
            ptr[finish_base] = n_own[p]
        image.ptr = ptr
    reduce = _Reduce(n_own=n_own, n_local=n_local, route_base=route_base,
                     finish_base=finish_base,
                     cycles=timing.reduce_schedule(destinations, lanes).cycles,
                     long_rows=int(np.count_nonzero(long)),
                     pieces=int(np.count_nonzero(long[lr_row])))
    own = [rows[lr_row[perm[:n_own[p]]]] for p, perm in enumerate(perms)]
    return _Block(own, [image_set], reduce)
