"""Split rows: CSR blocks whose long rows are cut into pieces across the lanes and
summed with ``REDUCE``."""

from __future__ import annotations

import dataclasses

import numpy as np

from zeroskip.core import timing
from zeroskip.core.isa import Format, route_word
from zeroskip.firmware.compiler.bands import _lpt, _ranges, row_cap
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
    config, epi = ctx.config, ctx.epi
    lanes, cap = config.pes, row_cap(config)
    lengths = ctx.counts[rows, ct]
    work = np.maximum(lengths, 1)
    pieces = _pieces(work, lanes)
    long = pieces > 1
    if not long.any():
        return _whole_rows_block(ctx, rows, ct, lengths, work)
    # Items: whole rows and the pieces of the long rows.
    item_row, piece, item_start, item_len = _items(ctx.starts[rows, ct], lengths, pieces)
    if len(item_row) > lanes * cap:
        return None
    assign = _lpt(np.maximum(item_len, 1), lanes, cap)
    owner = assign[piece == 0]
    local = _LocalRows.of(assign, item_row, piece, assign != owner[item_row], item_start,
                          item_len)
    if np.bincount(local.lane, weights=local.length, minlength=lanes).max() > config.nz_depth:
        return None
    n_local = np.bincount(local.lane, minlength=lanes)
    n_own = np.bincount(local.lane[~local.helper], minlength=lanes)
    helpers = n_local - n_own
    if not helpers.any():
        own = [rows[local.row[local.lane == p]] for p in range(lanes)]
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
    local_index = np.arange(len(local.lane)) - lane_first[local.lane]
    owner_row = np.zeros(len(rows), dtype=np.int64)
    owner_row[local.row[~local.helper]] = local_index[~local.helper]
    # Own rows first, then the helper pieces (the scatter bus takes one sum
    # per cycle, so their order does not matter).
    perms = [np.r_[np.flatnonzero((local.lane == p) & ~local.helper),
                   np.flatnonzero((local.lane == p) & local.helper)].astype(np.int64)
             for p in range(lanes)]
    image_set = _split_images(ctx, ct, local, perms)
    destinations = []
    for p, (image, perm) in enumerate(zip(image_set.images, perms, strict=True)):
        routed = local.row[perm[n_own[p]:]]
        destinations.append(owner[routed])
        image.ptr = _routed_ptr(image.ptr, config, owner[routed], owner_row[routed],
                                route_base, finish_base, int(helpers[p]), int(n_own[p]))
    reduce = _Reduce(n_own=n_own, n_local=n_local, route_base=route_base,
                     finish_base=finish_base,
                     cycles=timing.reduce_schedule(destinations, lanes).cycles,
                     long_rows=int(np.count_nonzero(long)),
                     pieces=int(np.count_nonzero(long[local.row])))
    own = [rows[local.row[perm[:n_own[p]]]] for p, perm in enumerate(perms)]
    return _Block(own, [image_set], reduce)


def _whole_rows_block(ctx, rows, ct, lengths, work):
    """:func:`_split_block` of rows none of which is long (a part of a band halved to
    fit): whole rows by longest-processing-time-first, or ``None`` if they do not fit."""
    config = ctx.config
    lanes, cap = config.pes, row_cap(config)
    if len(rows) > lanes * cap:
        return None
    assign = _lpt(work, lanes, cap)
    if np.bincount(assign, weights=lengths, minlength=lanes).max() > config.nz_depth:
        return None
    return _whole_block(ctx, Format.CSR, [rows[assign == p] for p in range(lanes)], [ct])


def _items(row_starts, lengths, pieces):
    """The whole rows and the pieces of the long rows: ``(row, piece index, first
    entry, entries)`` per item, each row cut into ``pieces`` contiguous runs of
    about equal size."""
    item_row = np.repeat(np.arange(len(lengths)), pieces)
    piece = np.arange(len(item_row)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    k, n = pieces[item_row], lengths[item_row]
    item_start = row_starts[item_row] + n * piece // k
    item_len = row_starts[item_row] + n * (piece + 1) // k - item_start
    return item_row, piece, item_start, item_len


@dataclasses.dataclass
class _LocalRows:
    """The local rows of a split block, lane by lane (own rows first, then helper
    pieces; a lane's items of one row merged): per local row its lane, block row,
    whether it is a helper piece, its entries and where they start in ``entries``
    (the indices into ``a`` of every local row's entries, in order)."""
    lane: np.ndarray
    row: np.ndarray
    helper: np.ndarray
    length: np.ndarray
    start: np.ndarray
    entries: np.ndarray

    @classmethod
    def of(cls, assign, item_row, piece, helper, item_start, item_len):
        order = np.lexsort((piece, item_row, helper, assign))
        lane_of, row_of = assign[order], item_row[order]
        fresh = np.r_[True, (lane_of[1:] != lane_of[:-1]) | (row_of[1:] != row_of[:-1])]
        local_id = np.cumsum(fresh) - 1
        length = np.bincount(local_id, weights=item_len[order]).astype(np.int64)
        return cls(lane=lane_of[fresh], row=row_of[fresh], helper=helper[order][fresh],
                   length=length, start=np.cumsum(length) - length,
                   entries=_ranges(item_start[order], item_len[order]))


def _split_images(ctx, ct, local, perms):
    """The CSR image set of the local rows in each lane's order ``perms`` (bank-aware
    ordered within the rows when the compilation asks for it)."""
    a, config = ctx.a, ctx.config
    parts = [(local.length[perm], local.entries[_ranges(local.start[perm], local.length[perm])])
             for perm in perms]
    x_start = ct * ctx.width
    x_stop = min(a.shape[1], x_start + ctx.width)
    if ctx.bank_aware:
        _, parts = _bank_order(parts, a, x_start, config, reorder_rows=False)
    return _row_set(Format.CSR, parts, a, x_start, x_stop, config)


def _routed_ptr(image_ptr, config, lanes_to, rows_to, route_base, finish_base, helpers, n_own):
    """A lane's ``ptr`` image with its route list at ``route_base`` (helper pieces
    sent to ``lanes_to``'s local rows ``rows_to``) and, with ``finish_base``, the
    finishing descriptor of its ``n_own`` rows."""
    routes = [route_word(config, int(q), int(r))
              for q, r in zip(lanes_to, rows_to, strict=True)]
    size = route_base + 2 + helpers if finish_base is None else finish_base + 1 + n_own
    ptr = np.zeros(size, dtype=np.uint32)
    ptr[:len(image_ptr)] = image_ptr
    ptr[route_base:route_base + 2 + helpers] = [helpers, n_own] + routes
    if finish_base is not None:
        ptr[finish_base] = n_own
    return ptr
