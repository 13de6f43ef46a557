"""The firmware compiler: a quantized sparse matrix to a :class:`Program`.

Steps: validate; split the columns into tiles of at most ``x_depth`` columns;
split the rows into blocks whose per-lane rows and nonzeros fit the lane
memories; spread each block's rows over the lanes, balanced by work (a row
costs ``max(nnz, 1)`` tokens) with longest-processing-time-first; order each
row's nonzeros so that the lanes' heads hit different input-vector banks
(replaying the gather arbitration of the timing contract); lay out the lane
images and emit ``SET_EPI``/``SPMV``/``HALT`` per tile.
"""

from __future__ import annotations

import heapq

import numpy as np
import scipy.sparse
from amaranth.hdl import Shape

from ..config import AcceleratorConfig
from ..errors import CompileError
from .asm import encode_halt, encode_set_epi, encode_spmv
from .isa import EpiArgs
from .program import Epilogue, Program, Tile, pack_nz

__all__ = ["compile_spmv"]


def _show(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise CompileError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise CompileError(f"{name} must be between {low} and {high}, not {value}")
    return int(value)


def _matrix(matrix, config):
    if scipy.sparse.issparse(matrix):
        a = matrix.tocsr(copy=True)
    else:
        dense = np.asarray(matrix)
        if dense.ndim != 2:
            raise CompileError(f"matrix must be 2-D, not {dense.ndim}-D")
        a = scipy.sparse.csr_matrix(dense)
    a.sum_duplicates()
    data = np.asarray(a.data)
    if data.dtype == bool:
        data = data.astype(np.int64)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise CompileError(f"matrix values must be numbers, not {data.dtype}")

    def where(k):
        row = int(np.searchsorted(a.indptr, k, side="right")) - 1
        return f"at row {row}, column {a.indices[k]}"

    if np.issubdtype(data.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(data) | (data != np.floor(data)))
        if len(bad):
            k = bad[0]
            raise CompileError(f"matrix value {_show(data[k])} {where(k)} is not an integer "
                               f"(quantize it first)")
    outside = np.flatnonzero((data < config.value_min) | (data > config.value_max))
    if len(outside):
        k = outside[0]
        raise CompileError(f"matrix value {_show(data[k])} {where(k)} does not fit "
                           f"{config.value_width}-bit signed values")
    a = scipy.sparse.csr_matrix((data.astype(np.int64), a.indices.astype(np.int64),
                                 a.indptr.astype(np.int64)), shape=a.shape)
    a.eliminate_zeros()
    return a


def _bias(bias, rows, config):
    values = np.asarray(bias)
    if values.ndim != 1:
        raise CompileError(f"bias must be a vector, not {values.ndim}-D")
    if len(values) != rows:
        raise CompileError(f"bias has {len(values)} values but the matrix has {rows} rows")
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer)
                                    or np.issubdtype(values.dtype, np.floating)):
        raise CompileError(f"bias values must be numbers, not {values.dtype}")
    if np.issubdtype(values.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.floor(values)))
        if len(bad):
            raise CompileError(f"bias value {_show(values[bad[0]])} at index {bad[0]} is not an "
                               f"integer (quantize it first)")
    outside = np.flatnonzero((values < config.acc_min) | (values > config.acc_max))
    if len(outside):
        k = outside[0]
        raise CompileError(f"bias value {_show(values[k])} at index {k} does not fit "
                           f"{config.acc_width}-bit signed accumulators")
    return values.astype(np.int64)


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


def _column_width(a, config):
    """Widest column tile (at most ``x_depth``) in which no row exceeds ``nz_depth``."""
    width = config.x_depth
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    while width > config.nz_depth:
        if a.nnz == 0:
            break
        keys = rows * (a.shape[1] // width + 1) + a.indices // width
        if np.bincount(keys).max() <= config.nz_depth:
            break
        width //= 2
    return width


def _blocks(counts, config):
    """Split the rows into blocks.

    Yields ``(start, stop, lane of each row, active column tiles)``: the rows
    ``start:stop`` fit the lanes' row and nonzero memories once spread.
    """
    rows, n_ct = counts.shape
    lanes, cap = config.pes, config.row_depth - 1
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


def _order_lanes(lane_rows, x_banks, lanes, *, reorder_rows=False, window=16):
    """Order each lane's nonzeros so concurrent lane heads hit different banks.

    Replays the round-robin arbitration of :func:`.timing.schedule` while
    choosing every lane's next head: among the banks its current row still
    needs, a bank no other lane claims this cycle (the one with the most
    entries left), else the most needed one. With ``reorder_rows`` a lane
    that starts a row also picks which row: the first of its next ``window``
    rows that offers a free bank, else an empty row (which needs no bank).

    Parameters
    ----------
    lane_rows : list of list of list of (bank, entry)
        Per lane, per row, its nonzeros.

    Returns
    -------
    (list of list of int, list of list of int, int)
        Per lane, the entries in stored order; per lane, the row indices in
        stored order; and the schedule length.
    """
    pools = []     # per lane: rows still to start, in order (non-empty rows if reordering)
    empties = []   # per lane: empty rows held back as stall fillers (reordering only)
    for rows in lane_rows:
        if reorder_rows:
            pools.append([i for i, row in enumerate(rows) if row])
            empties.append([i for i, row in enumerate(rows) if not row])
        else:
            pools.append(list(range(len(rows))))
            empties.append([])
        pools[-1].reverse()
        empties[-1].reverse()
    buckets = [None] * lanes
    heads = [None] * lanes
    order = [[] for _ in range(lanes)]
    row_order = [[] for _ in range(lanes)]
    rr = [0] * x_banks

    def pick(p, claims):
        bucket = buckets[p]
        best, best_count, fallback, fallback_count = -1, -1, -1, -1
        for bank, entries in bucket.items():
            n = len(entries)
            if bank in claims:
                if n > fallback_count:
                    fallback, fallback_count = bank, n
            elif n > best_count:
                best, best_count = bank, n
        bank = best if best >= 0 else fallback
        entries = bucket[bank]
        entry = entries.pop()
        if not entries:
            del bucket[bank]
        heads[p] = (bank, entry)
        claim = claims.get(bank)
        if claim is None:
            claims[bank] = [p]
        else:
            claim.append(p)

    def start_row(p, claims):
        """Take the lane's next row; False if it is empty (consumed at once)."""
        pool = pools[p]
        choice = None
        if reorder_rows:
            for k in range(len(pool) - 1, max(-1, len(pool) - 1 - window), -1):
                if any(bank not in claims for bank, _ in lane_rows[p][pool[k]]):
                    choice = pool.pop(k)
                    break
            if choice is None and empties[p]:
                row_order[p].append(empties[p].pop())
                return False
        if choice is None:
            choice = pool.pop()
        row_order[p].append(choice)
        row = lane_rows[p][choice]
        if not row:
            return False
        bucket = {}
        for bank, entry in row:
            bucket.setdefault(bank, []).append(entry)
        buckets[p] = bucket
        return True

    active = [p for p in range(lanes) if pools[p] or empties[p]]
    cycles = 0
    while active:
        cycles += 1
        claims = {}
        choosing, starting = [], []
        for p in active:
            if heads[p] is not None:
                claims.setdefault(heads[p][0], []).append(p)
            elif buckets[p]:
                choosing.append(p)
            else:
                starting.append(p)
        # Lanes inside a row have the fewest choices: the most constrained pick first.
        if len(choosing) > 1:
            choosing.sort(key=lambda q: len(buckets[q]))
        for p in choosing:
            pick(p, claims)
        for p in starting:
            if start_row(p, claims):
                pick(p, claims)
        for bank, claimants in claims.items():
            if len(claimants) == 1:
                winner = claimants[0]
            else:
                claimants.sort()
                first = rr[bank]
                winner = next((q for q in claimants if q >= first), claimants[0])
            order[winner].append(heads[winner][1])
            heads[winner] = None
            rr[bank] = (winner + 1) % lanes
        active = [p for p in active
                  if heads[p] is not None or buckets[p] or pools[p] or empties[p]]
    return order, row_order, cycles


def compile_spmv(matrix, config, *, bias=None, shift=0, relu=False, clamp=None, epilogue=None,
                 a_frac_bits=0, x_frac_bits=0, name="matrix", bank_aware=True):
    """Compile ``y = A @ x`` for one accelerator configuration.

    Parameters
    ----------
    matrix : scipy.sparse matrix or 2-D array
        Integer values fitting the signed value width (already quantized).
        Explicit zeros are dropped.
    config : AcceleratorConfig
    bias : 1-D array of int, optional
        Added to each row at accumulator scale (before the epilogue).
    shift : int
        Epilogue right shift (rounding to nearest), 0 to 31.
    relu : bool
        Epilogue ReLU.
    clamp : (int, int), optional
        Epilogue clamp bounds; the value range by default.
    epilogue : bool, optional
        Apply the epilogue; by default when ``shift``, ``relu`` or ``clamp``
        is given. Without it the raw accumulator is read back.
    a_frac_bits, x_frac_bits : int
        Fixed-point scaling of the matrix and of the vector (recorded only).
    name : str
        Name of the program.
    bank_aware : bool
        Order nonzeros to avoid input-vector bank conflicts (else by column).

    Returns
    -------
    Program

    Raises
    ------
    CompileError
        On values that are not integers or do not fit, a bias of the wrong
        length, or invalid epilogue settings.
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    a = _matrix(matrix, config)
    rows, cols = a.shape
    epi_layout = EpiArgs.as_shape()
    shift_shape = Shape.cast(epi_layout["shift"].shape)
    lo_shape = Shape.cast(epi_layout["clamp_lo"].shape)
    shift = _check_int("shift", shift, 0, (1 << shift_shape.width) - 1)
    if not isinstance(relu, (bool, np.bool_)):
        raise CompileError(f"relu must be True or False, not {relu!r}")
    if epilogue is None:
        epilogue = bool(shift or relu or clamp is not None)
    elif not isinstance(epilogue, (bool, np.bool_)):
        raise CompileError(f"epilogue must be True or False, not {epilogue!r}")
    elif not epilogue and (shift or relu or clamp is not None):
        raise CompileError("shift, relu and clamp need the epilogue (epilogue=False given)")
    if clamp is None:
        clamp_lo, clamp_hi = config.value_min, config.value_max
    else:
        try:
            clamp_lo, clamp_hi = clamp
        except (TypeError, ValueError):
            raise CompileError(f"clamp must be a pair (lo, hi), not {clamp!r}") from None
        low, high = -(1 << (lo_shape.width - 1)), (1 << (lo_shape.width - 1)) - 1
        clamp_lo = _check_int("clamp low bound", clamp_lo, low, high)
        clamp_hi = _check_int("clamp high bound", clamp_hi, low, high)
        if clamp_lo > clamp_hi:
            raise CompileError(f"clamp low bound {clamp_lo} exceeds high bound {clamp_hi}")
    bias_values = None if bias is None else _bias(bias, rows, config)
    for label, value in (("a_frac_bits", a_frac_bits), ("x_frac_bits", x_frac_bits)):
        _check_int(label, value, -64, 64)
    if not isinstance(name, str):
        raise CompileError(f"name must be a string, not {name!r}")

    lanes = config.pes
    width = _column_width(a, config)
    n_ct = max(1, -(-cols // width))
    entry_rows = np.repeat(np.arange(rows), np.diff(a.indptr))
    entry_ct = a.indices // width
    counts = np.zeros((rows, n_ct), dtype=np.int64)
    np.add.at(counts, (entry_rows, entry_ct), 1)
    # CSR columns are sorted, so each (row, column tile) is a contiguous run.
    starts = a.indptr[:-1, None] + np.cumsum(counts, axis=1) - counts

    set_epi = encode_set_epi(shift=shift, relu=bool(relu), clamp_lo=clamp_lo, clamp_hi=clamp_hi)
    halt = encode_halt()
    tiles = []
    lane_nnz = np.zeros(lanes, dtype=np.int64)
    for start, _stop, assign, active_cts in _blocks(counts, config):
        lane_rows = [np.flatnonzero(assign == p) + start for p in range(lanes)]
        for k, ct in enumerate(active_cts.tolist()):
            first, last = k == 0, k == len(active_cts) - 1
            x_start = ct * width
            x_stop = min(cols, x_start + width)
            if bank_aware:
                # Rows keep their out address across column tiles: reorder rows
                # only when the block has a single one.
                lane_rows, per_lane = _bank_order(lane_rows, counts[:, ct], starts[:, ct], a,
                                                  x_start, config,
                                                  reorder_rows=len(active_cts) == 1)
            else:
                per_lane = []
                for rows_p in lane_rows:
                    lengths = counts[rows_p, ct]
                    per_lane.append((lengths, _ranges(starts[rows_p, ct], lengths)))
            ptr, nz, tile_bias = [], [], [] if (last and bias_values is not None) else None
            for p, (lengths, entries) in enumerate(per_lane):
                ptr.append(np.concatenate(([len(lengths)], np.cumsum(lengths)))
                           .astype(np.uint32))
                nz.append(pack_nz(a.indices[entries] - x_start, a.data[entries], config))
                lane_nnz[p] += len(entries)
                if tile_bias is not None:
                    tile_bias.append(bias_values[lane_rows[p]].astype(np.int64))
            if not any(len(words) for words in nz):
                x_start = x_stop = 0
            code = ([set_epi] if last and epilogue else []) + [
                encode_spmv(accumulate=not first, epilogue=last and epilogue,
                            bias=last and bias_values is not None),
                halt]
            if last:
                readback = np.concatenate([
                    np.stack([np.full(len(r), p), np.arange(len(r)), r], axis=1)
                    for p, r in enumerate(lane_rows)]).astype(np.int64).reshape(-1, 3)
            else:
                readback = np.zeros((0, 3), dtype=np.int64)
            tiles.append(Tile(code=np.array(code, dtype=np.uint64), ptr=ptr, nz=nz,
                              bias=tile_bias, x_cols=(x_start, x_stop), readback=readback))

    return Program(
        config=config, shape=(rows, cols), nnz=int(a.nnz), tiles=tiles,
        a_frac_bits=int(a_frac_bits), x_frac_bits=int(x_frac_bits),
        epilogue=Epilogue(applied=bool(epilogue), shift=shift, relu=bool(relu),
                          clamp_lo=clamp_lo, clamp_hi=clamp_hi,
                          has_bias=bias_values is not None),
        lane_nnz=lane_nnz, name=name)


def _bank_order(lane_rows, counts, starts, a, x_start, config, *, reorder_rows):
    """Order the lanes' entries (and rows) with :func:`_order_lanes`.

    Returns the lanes' rows in stored order and, per lane, the row lengths
    and entry indices in stored order.
    """
    nested = []
    for rows_p in lane_rows:
        lengths = counts[rows_p]
        entries = _ranges(starts[rows_p], lengths)
        banks = ((a.indices[entries] - x_start) % config.x_banks).tolist()
        entry_list = entries.tolist()
        rows, position = [], 0
        for n in lengths.tolist():
            rows.append(list(zip(banks[position:position + n],
                                 entry_list[position:position + n], strict=True)))
            position += n
        nested.append(rows)
    order, row_order, _ = _order_lanes(nested, config.x_banks, config.pes,
                                       reorder_rows=reorder_rows)
    new_rows, per_lane = [], []
    for rows_p, entries, perm in zip(lane_rows, order, row_order, strict=True):
        rows_p = rows_p[np.array(perm, dtype=np.int64)]
        new_rows.append(rows_p)
        per_lane.append((counts[rows_p], np.array(entries, dtype=np.int64)))
    return new_rows, per_lane
