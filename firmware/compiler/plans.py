"""Plans: one format's lane images for one band, and their predicted cycles."""

from __future__ import annotations

import dataclasses

import numpy as np

from zeroskip.core import timing
from zeroskip.core.errors import CompileError
from zeroskip.core.isa import Format
from zeroskip.firmware import formats
from zeroskip.firmware.asm import encode_reduce, encode_spmv
from zeroskip.firmware.compiler.bands import _lpt, _ranges, row_cap
from zeroskip.firmware.compiler.gather import _bank_order, _order_lanes
from zeroskip.firmware.cycles import gather_schedule
from zeroskip.firmware.formats import (
    PLAN_TILES,
    decode_lane,
    encode_lane,
    unpack_entries,
)


@dataclasses.dataclass
class _Context:
    """What the plans of one compilation read.

    ``a`` is the validated matrix (CSR, int64); ``counts[r, t]`` and
    ``starts[r, t]`` the nonzeros of row ``r`` in column tile ``t`` (of
    ``width`` columns) and where they start in ``a``'s entries.
    """
    a: object
    counts: np.ndarray
    starts: np.ndarray
    width: int
    config: object
    epi: object
    operand: object
    nm: tuple
    bank_aware: bool = True
    split_rows: object = "auto"


@dataclasses.dataclass
class _LaneColumns:
    """What column mode's timing reads of one lane's CSC image: its rows ``n`` and
    the end (exclusive) of each column's entries (``LaneStream``'s fields)."""
    n: int
    col_ends: np.ndarray


@dataclasses.dataclass
class _ImageSet:
    """One column tile of a block: the lanes' images and their cost."""
    fmt: Format
    images: list
    x_start: int
    x_stop: int
    width: int               # columns the SPMV spans (the x slot it needs)
    cycles: int = 0          # row and dense formats: schedule length from rr = 0
    lanes: list = None       # CSC: per lane, its _LaneColumns

    def column_cycles(self, patterns, final, config):
        """CSC: the ``SPMV``'s cycles for each right-hand column, exactly as
        :func:`zeroskip.core.timing.column_mode_cycles` counts them (``patterns``:
        (cols, k) nonzero activations, ``None`` for one column with every
        activation nonzero; ``final``: the instruction accumulates, adds a bias
        or applies the epilogue). The slot of every right-hand column starts
        at a multiple of ``x_banks`` (see :func:`_x_stride`), where the
        detector's bank rows are those of slot 0."""
        args = {"x_base": 0, "accumulate": bool(final), "bias": False, "epilogue": False}
        count = max((len(lane.col_ends) for lane in self.lanes), default=0)
        if patterns is None:
            return np.array([timing.CSC_OVERHEAD + timing.column_mode_cycles(
                self.lanes, args, None, config)], dtype=np.int64)
        visited = np.zeros((count, patterns.shape[1]), dtype=np.int64)
        stop = min(self.x_stop, self.x_start + count)
        if stop > self.x_start:
            visited[:stop - self.x_start] = patterns[self.x_start:stop]
        cache, total = {}, np.zeros(patterns.shape[1], dtype=np.int64)
        for k in range(patterns.shape[1]):
            key = visited[:, k].tobytes()
            if key not in cache:
                cache[key] = timing.CSC_OVERHEAD + timing.column_mode_cycles(
                    self.lanes, args, visited[:, k], config)
            total[k] = cache[key]
        return total


@dataclasses.dataclass
class _Reduce:
    """The long rows a block splits across lanes (see :func:`_split_block`).

    Per lane, local rows ``0 .. n_own - 1`` are its own rows (whole rows and
    the first pieces of split rows), ``n_own .. n_local - 1`` its helper
    pieces; ``REDUCE`` adds every helper piece to its owner's row.
    """
    n_own: np.ndarray           # per lane
    n_local: np.ndarray         # per lane: own rows and helper pieces
    route_base: int             # ptr address of the route lists
    finish_base: int | None     # ptr address of the finishing descriptors (None: no tail)
    cycles: int                 # scatter schedule length from rr = 0
    long_rows: int
    pieces: int                 # local rows of the split rows, over all lanes

    @property
    def per_column(self):
        """Instructions per right-hand column: ``SPMV``, ``REDUCE`` and the finish."""
        return 2 + (self.finish_base is not None)

    def cycles_per_column(self):
        """Predicted cycles of the ``REDUCE`` and the finishing ``SPMV`` of one column."""
        cycles = timing.reduce_cycles(self.cycles)
        if self.finish_base is not None:
            cycles += timing.SPMV_OVERHEAD + int(self.n_own.max())
        return cycles

    def code(self, x_base, out_base, epi):
        """The instructions of one right-hand column."""
        code = [encode_spmv(x_base=x_base, out_base=out_base),
                encode_reduce(ptr_base=self.route_base, src_base=out_base, dst_base=out_base)]
        if self.finish_base is not None:
            code.append(encode_spmv(ptr_base=self.finish_base, out_base=out_base,
                                    accumulate=True, epilogue=epi.applied,
                                    bias=epi.bias is not None))
        return code


@dataclasses.dataclass
class _Block:
    """Rows spread over the lanes and the column tiles they run.

    ``lane_rows`` holds per lane the rows whose results it reads back, at
    local rows 0, 1, ...; a block that splits rows has ``reduce``.
    """
    lane_rows: list
    sets: list
    reduce: _Reduce | None = None

    @property
    def n_max(self):
        """Local rows of the fullest lane (``out`` words per right-hand column)."""
        if self.reduce is not None:
            return int(self.reduce.n_local.max())
        return max((len(r) for r in self.lane_rows), default=0)

    @property
    def per_column(self):
        """Instructions per right-hand column in the last column tile."""
        return 1 if self.reduce is None else self.reduce.per_column


@dataclasses.dataclass
class _Plan:
    """One candidate (a format) for one band.

    ``split`` records, for CSR, the decision on splitting long rows (see
    :func:`_consider_split`).
    """
    fmt: Format
    blocks: list
    split: dict | None = None

    @property
    def dataflow(self):
        return formats.get(self.fmt).spec.dataflow

    @property
    def splits_rows(self):
        return any(block.reduce is not None for block in self.blocks)

    def run_cycles(self, patterns, count, tail, config):
        """Cycles of every ``SPMV`` and ``REDUCE`` for each of ``count`` right-hand columns."""
        total = np.zeros(count, dtype=np.int64)
        for block in self.blocks:
            for index, image_set in enumerate(block.sets):
                if formats.get(self.fmt).spec.column_mode:
                    # Column tiles after the first accumulate; the last adds the
                    # bias and applies the epilogue.
                    final = index > 0 or (tail and index == len(block.sets) - 1)
                    total += image_set.column_cycles(patterns, final, config)
                else:
                    total += timing.SPMV_OVERHEAD + image_set.cycles
            if block.reduce is not None:
                total += block.reduce.cycles_per_column()
        return total

    def overhead(self, count, config, epi, matrix):
        """Cycles of the ``HALT`` and ``SET_EPI`` of the tiles for ``count`` columns."""
        if count == 0:
            return 0
        total = 0
        for block in self.blocks:
            batch = _batch_size(block, config, epi, matrix, count)
            batches = -(-count // batch)
            per_tile = [timing.INSN_OVERHEAD * (1 + (epi.applied and i == len(block.sets) - 1))
                        for i in range(len(block.sets))]
            total += batches * sum(per_tile)
        return total

    def tiles(self, count, config, epi, matrix):
        """Tiles (load-run-read rounds) for ``count`` right-hand columns."""
        if count == 0:
            return 0
        return sum(-(-count // _batch_size(block, config, epi, matrix, count)) * len(block.sets)
                   for block in self.blocks)


def _x_stride(block, config):
    width = max((s.width for s in block.sets), default=1)
    banks = config.x_banks
    stride = -(-max(width, 1) // banks) * banks
    return stride if stride <= config.x_slot_depth else width


def column_bases(j, stride, n_max, config):
    """``(x_base, out_base)`` of right-hand column ``j`` of a tile whose inputs take
    ``stride`` X words and whose lanes ``n_max`` rows: column ``j`` is in slot ``j %
    k`` of X and ``out`` (the pass rule of :mod:`zeroskip.core.timing`), at its
    pass ``j // k``; with ``k = 1``, ``(j * stride, j * n_max)``."""
    k = config.products_per_lane
    slot, step = j % k, j // k
    return (slot * config.x_slot_depth + step * stride,
            slot * config.row_slot_depth + step * n_max)


def _batch_size(block, config, epi, matrix, count):
    if not matrix:
        return 1
    rows = max(block.n_max, 1)
    k = config.products_per_lane
    steps = min(config.row_slot_depth // rows, config.x_slot_depth // _x_stride(block, config))
    limit = min(k * steps, (config.imem_depth - 1 - int(epi.applied)) // block.per_column)
    size = max(1, min(count, limit))
    # Whole passes per tile (the pass rule of zeroskip.core.timing), so that the passes of
    # every tile are the same consecutive groups of k right-hand columns.
    return size - size % k if k < size < count else size


def _stream_cycles(fmt, images, config):
    """Schedule length of one column tile from rr = 0 (row and dense formats)."""
    tokens = []
    for image in images:
        stream = decode_lane(fmt, image.ptr, image.nz, image.meta, ptr_base=0, nz_base=0,
                             x_base=0, out_base=0, config=config)
        tokens.append(stream.banks(0, config.x_banks))
    return gather_schedule(tokens, config.x_banks, cluster_lanes=config.cluster_lanes).cycles


def _row_set(fmt, parts, a, x_start, x_stop, config):
    """A column tile of CSR or COO rows: per lane ``(lengths, entries)`` in stored order."""
    images = [encode_lane(fmt, lengths, a.indices[entries] - x_start, a.data[entries], config,
                          width=x_stop - x_start) for lengths, entries in parts]
    if not any(len(image.nz) for image in images):
        x_start = x_stop = 0
    image_set = _ImageSet(fmt, images, x_start, x_stop, max(x_stop - x_start, 1))
    # Row after row, one token per entry and one per empty row (what the
    # decoder streams, without decoding the images again).
    tokens = [timing.lane_tokens(np.cumsum(lengths), a.indices[entries] - x_start,
                                 x_banks=config.x_banks) for lengths, entries in parts]
    image_set.cycles = gather_schedule(tokens, config.x_banks,
                                       cluster_lanes=config.cluster_lanes).cycles
    return image_set


def _whole_block(ctx, fmt, lane_rows, active_cts):
    """A block of whole rows (``lane_rows``: per lane, in local order) in CSR or COO."""
    a, counts, starts, width, config = ctx.a, ctx.counts, ctx.starts, ctx.width, ctx.config
    cols = a.shape[1]
    sets = []
    for ct in active_cts:
        x_start = ct * width
        x_stop = min(cols, x_start + width)
        parts = [(counts[rows_p, ct], _ranges(starts[rows_p, ct], counts[rows_p, ct]))
                 for rows_p in lane_rows]
        if ctx.bank_aware:
            # Rows keep their out address across column tiles: reorder rows
            # only when the block has a single one.
            perms, parts = _bank_order(parts, a, x_start, config,
                                       reorder_rows=len(active_cts) == 1)
            lane_rows = [rows_p[perm] for rows_p, perm in zip(lane_rows, perms, strict=True)]
        sets.append(_row_set(fmt, parts, a, x_start, x_stop, config))
    return _Block(lane_rows, sets)


def _plan_csr(ctx, fmt, band):
    """The original CSR path for one band, whole rows (COO shares its order and its tokens)."""
    start, _stop, assign, active_cts = band
    lane_rows = [np.flatnonzero(assign == p) + start for p in range(ctx.config.pes)]
    return _Plan(fmt, [_whole_block(ctx, fmt, lane_rows, active_cts.tolist())])


def _split_rows(rows, work, memory, cap, config):
    """Split ``rows`` into blocks whose lanes' memory words fit ``nz_depth``.

    Yields ``(rows of the block, lane of each row)``; rows go to lanes by
    longest-processing-time-first on ``work``, at most ``cap`` per lane.
    ``memory`` is ``(rows, tiles)``: the words a row needs in each tile.
    """
    lanes, limit = config.pes, config.nz_depth
    total = len(rows)
    cumulative = np.vstack([np.zeros((1, memory.shape[1]), dtype=np.int64),
                            np.cumsum(memory, axis=0)])
    start = 0
    while start < total:
        stop = min(total, start + lanes * cap)
        bounds = cumulative[start] + lanes * limit
        for t in range(memory.shape[1]):
            stop = min(stop, int(np.searchsorted(cumulative[:, t], bounds[t], "right")) - 1)
        stop = max(stop, start + 1)

        def fits(end, start=start):
            assign = _lpt(work[start:end], lanes, cap)
            per_lane = np.zeros((lanes, memory.shape[1]), dtype=np.int64)
            np.add.at(per_lane, assign, memory[start:end])
            return (int(per_lane.max()) if per_lane.size else 0) <= limit, assign

        ok, assign = fits(stop)
        if not ok:
            # The largest block that fits (binary search; one row always does).
            low, high = start + 1, stop - 1
            best = (start + 1, fits(start + 1)[1])
            while low <= high:
                middle = (low + high) // 2
                ok, trial = fits(middle)
                if ok:
                    best = (middle, trial)
                    low = middle + 1
                else:
                    high = middle - 1
            stop, assign = best
        yield rows[start:stop], assign
        start = stop


def _column_tiles(cols, width):
    return [(t * width, min(cols, (t + 1) * width)) for t in range(max(1, -(-cols // width)))]


def _plan_generic(fmt, rows, a, tiles, config, epi, nm):
    """A format planned by column tiles (``PLAN_TILES``) for the rows ``rows`` (one band),
    from the cost terms of its codec (:meth:`~.formats.FormatCodec.lane_terms`)."""
    codec = formats.get(fmt)
    if codec.planner != PLAN_TILES:
        tiled = [c.spec.name for c in formats.codecs() if c.planner == PLAN_TILES]
        by_rows = [c.spec.member for c in formats.codecs() if c.planner != PLAN_TILES]
        raise CompileError(f"no plan for format {codec.spec.name!r}: the generic plans cover "
                           f"{', '.join(tiled)} ({' and '.join(by_rows)} rows are planned by "
                           f"_plan_csr)")
    lanes = config.pes
    sub = a[rows]
    n_rows = len(rows)
    counts = np.zeros((n_rows, len(tiles)), dtype=np.int64)
    entry_rows = np.repeat(np.arange(n_rows), np.diff(sub.indptr))
    bounds = np.array([start for start, _ in tiles[1:]], dtype=np.int64)
    entry_tile = np.searchsorted(bounds, sub.indices, side="right")
    np.add.at(counts, (entry_rows, entry_tile), 1)
    widths = np.array([stop - start for start, stop in tiles], dtype=np.int64)
    cap = row_cap(config, header=0)
    spans, memory, work = codec.lane_terms(widths, counts, config, epi, nm)
    blocks = []
    for block_rows, assign in _split_rows(np.arange(n_rows), work, memory, cap, config):
        lane_local = [block_rows[assign == p] for p in range(lanes)]
        block_counts = counts[block_rows]
        if codec.every_tile:
            active = list(range(len(tiles)))
        else:
            active = np.flatnonzero(block_counts.any(axis=0)).tolist() or [0]
        sets = []
        for t in active:
            x_start, x_stop = tiles[t]
            part = sub[:, x_start:x_stop].tocsr()
            images = []
            for local in lane_local:
                lane = part[local]
                lane.sort_indices()
                images.append(encode_lane(fmt, np.diff(lane.indptr), lane.indices, lane.data,
                                          config, width=int(spans[t]), nm=nm))
            sets.append(_ImageSet(fmt, images, x_start, x_stop, int(spans[t])))
        if fmt is Format.NM:
            for image_set in sets:
                _order_nm_slots(image_set, nm, config)
        if codec.spec.column_mode:
            for image_set in sets:
                image_set.lanes = [_LaneColumns(int(image.ptr[0]),
                                                image.ptr[2:].astype(np.int64))
                                   for image in image_set.images]
        else:
            for image_set in sets:
                image_set.cycles = _stream_cycles(fmt, image_set.images, config)
        blocks.append(_Block([rows[local] for local in lane_local], sets))
    return _Plan(fmt, blocks)


def _order_nm_slots(image_set, nm, config):
    """Order the slots inside every N:M group (any order is valid) so that the
    lanes' heads hit different banks, replaying the arbitration like CSR."""
    n, m = nm
    banks = config.x_banks
    nested, words = [], []
    for image in image_set.images:
        fields = np.asarray(image.nz, dtype=np.int64)
        cols, _ = unpack_entries(fields, config)
        slot = np.arange(len(fields))
        group = slot // n
        groups_per_row = int(image.ptr[1]) if len(image.ptr) > 1 else 0
        column = (group % max(groups_per_row, 1)) * m + cols
        bank = (column % banks).tolist()
        lane = [list(zip(bank[g * n:(g + 1) * n], range(g * n, (g + 1) * n), strict=True))
                for g in range(len(fields) // n)]
        nested.append(lane)
        words.append(fields)
    order, _, _ = _order_lanes(nested, banks, config.pes)
    for image, fields, entries in zip(image_set.images, words, order, strict=True):
        image.nz = fields[np.asarray(entries, dtype=np.int64)].astype(np.uint32)

