"""The firmware compiler: a quantized sparse matrix to a :class:`Program`.

Steps: validate (and, on request, prune to N:M); pick the kernel from the
right-hand operand (a vector or a matrix, dense or sparse); split the rows
into bands whose rows and nonzeros fit the lane memories; then, per band,
the cost model builds every candidate — each enabled format with its
dataflow (row mode, dense mode, column mode) and its own partition of the
rows over the lanes — predicts its cycles with the timing contract and keeps
the fastest (for a sparse right-hand matrix, per right-hand column: column
mode or the best row format). Lay out the lane images, emit
``SET_EPI``/``SPMV``/``REDUCE``/``HALT`` per tile, batching as many right-hand
columns per tile as the ``x`` buffer, the ``out`` memories and the
instruction memory hold.

CSR keeps the original path: columns split into tiles of at most ``x_depth``
columns; rows spread over the lanes, balanced by work (a row costs
``max(nnz, 1)`` tokens) with longest-processing-time-first; each row's
nonzeros ordered so that the lanes' heads hit different input-vector banks
(replaying the gather arbitration of the timing contract).

Long rows. With the scatter/reduce network (``config.reduce``) a CSR block
with a single column tile may split the rows longer than a lane's fair share
of its work into pieces (contiguous runs of their nonzeros, of about equal
size) that are placed on the lanes like ordinary rows. The lane holding a
row's first piece owns the row: its local row receives the other pieces'
partial sums and is read back. A lane stores its own rows (whole rows and
owner pieces) at local rows ``0 .. n_own - 1`` and its helper pieces after
them; its ``ptr`` image holds the CSR descriptor of all of them, then (at
``1 + n_max``, the same address on every lane) the ``REDUCE`` route list
``[h, n_own, routes...]`` and, when the tile adds a bias or applies the
epilogue, (at ``route_base + 2 + h_max``) a CSR descriptor of ``n_own`` empty
rows. Per right-hand column the tile runs ``SPMV`` (no bias, no epilogue),
``REDUCE`` and, for the bias and the epilogue, a finishing ``SPMV`` over the
empty rows with ``accumulate`` set; a matrix right-hand side batches these
per column like the unsplit tiles (each column with its own ``out_base``). A
band whose split rows do not fit the row memory is halved until they do. The
cost model keeps the split plan only where it predicts fewer cycles than
whole rows (``split_rows``), and ``report["balance"]`` says what it decided
and why.
"""

from __future__ import annotations

import dataclasses
import heapq

import numpy as np
import scipy.sparse
from amaranth.hdl import Shape

from zeroskip import timing
from zeroskip.config import AcceleratorConfig
from zeroskip.errors import CompileError
from zeroskip.firmware.asm import encode_halt, encode_reduce, encode_set_epi, encode_spmv
from zeroskip.firmware.formats import (
    BITMAP_CHUNK,
    DATAFLOWS,
    FORMAT_NAMES,
    bitmap_row_cycles,
    decode_lane,
    encode_lane,
    format_by_name,
    nm_descriptor,
    nm_violation,
    parse_nm,
    prune_nm,
    unpack_entries,
)
from zeroskip.firmware.program import KERNELS, Epilogue, Program, Tile
from zeroskip.isa import EpiArgs, Format, route_word

__all__ = ["compile_spmv", "compile_kernel", "choose_kernel", "parse_nm", "ACTIVATION_SPARSE",
           "NM_DEFAULT", "DENSE_MARGIN", "FORMAT_CHOICES", "KERNEL_CHOICES"]

#: ``kernel="auto"`` picks the sparse kernel (SpMSpV, SpMSpM) when at most this
#: share of the right-hand operand is nonzero.
ACTIVATION_SPARSE = 0.5
#: Dense mode wins a band when the best sparse option saves less than this share
#: of its predicted cycles: sparsity does not pay there.
DENSE_MARGIN = 0.01
#: The N:M structure ``fmt="nm"`` assumes by default.
NM_DEFAULT = (2, 4)
#: What ``fmt`` and ``kernel`` accept.
FORMAT_CHOICES = ("auto",) + tuple(FORMAT_NAMES.values())
KERNEL_CHOICES = ("auto",) + KERNELS
#: On equal predicted cycles, the earlier format wins (fewer memory words).
_PREFERENCE = (Format.CSR, Format.COO, Format.NM, Format.BITMAP, Format.CSC, Format.DENSE)
#: Formats whose lane images use the meta memory.
_META_FORMATS = (Format.COO, Format.BITMAP, Format.CSC)


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



def _bank_order(parts, a, x_start, config, *, reorder_rows):
    """Order the lanes' entries (and rows) with :func:`_order_lanes`.

    ``parts`` holds per lane its local rows as ``(lengths, entries)``: the
    entries of each row (indices into ``a``), row after row. Returns per lane
    the row permutation (stored order) and the rows' ``(lengths, entries)``
    in stored order. Lanes of different gather clusters read different
    copies of x: cluster ``k``'s bank ``b`` is bank ``k * x_banks + b`` of
    the replay. With one lane per cluster nothing conflicts and the stored
    order stays.
    """
    if config.cluster_lanes == 1:
        return [np.arange(len(lengths)) for lengths, _ in parts], list(parts)
    nested = []
    for p, (lengths, entries) in enumerate(parts):
        offset = p // config.cluster_lanes * config.x_banks
        banks = (offset + (a.indices[entries] - x_start) % config.x_banks).tolist()
        entry_list = entries.tolist()
        rows, position = [], 0
        for n in lengths.tolist():
            rows.append(list(zip(banks[position:position + n],
                                 entry_list[position:position + n], strict=True)))
            position += n
        nested.append(rows)
    order, row_order, _ = _order_lanes(nested, config.x_banks * config.clusters, config.pes,
                                       reorder_rows=reorder_rows)
    perms, ordered = [], []
    for (lengths, _), entries, perm in zip(parts, order, row_order, strict=True):
        perm = np.array(perm, dtype=np.int64)
        perms.append(perm)
        ordered.append((lengths[perm], np.array(entries, dtype=np.int64)))
    return perms, ordered


# Settings ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Epi:
    """Validated epilogue settings of a compilation."""
    applied: bool
    shift: int
    relu: bool
    clamp_lo: int
    clamp_hi: int
    bias: np.ndarray | None
    set_epi: int

    @property
    def tail(self):
        """Whether the last column tile adds a bias or applies the epilogue."""
        return self.applied or self.bias is not None

    def record(self):
        return Epilogue(applied=self.applied, shift=self.shift, relu=self.relu,
                        clamp_lo=self.clamp_lo, clamp_hi=self.clamp_hi,
                        has_bias=self.bias is not None)


def _epilogue_settings(config, rows, *, bias, shift, relu, clamp, epilogue):
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
    return _Epi(applied=bool(epilogue), shift=shift, relu=bool(relu), clamp_lo=clamp_lo,
                clamp_hi=clamp_hi, bias=bias_values,
                set_epi=encode_set_epi(shift=shift, relu=bool(relu), clamp_lo=clamp_lo,
                                       clamp_hi=clamp_hi))


def _check_nm(nm, config):
    n, m = nm
    if m > config.x_depth:
        raise CompileError(f"N:M group of {m} columns exceeds the {config.x_depth}-entry "
                           f"x buffer")
    word = nm_descriptor(n, m)
    width = config.ptr_width
    if word >> width:
        raise CompileError(f"the {n}:{m} descriptor (N | log2(M) << 8 = {word}) needs "
                           f"{word.bit_length()} bits but pointer words have {width} in this "
                           f"configuration")


# The right-hand operand --------------------------------------------------------------------------

@dataclasses.dataclass
class _Operand:
    kernel: str
    columns: int                 # 0: a vector
    patterns: np.ndarray | None  # (cols, k) bool: nonzero activations; None: all nonzero
    density: float | None        # share of nonzero activations (None: unknown)

    @property
    def count(self):
        return max(self.columns, 1)

    @property
    def sparse(self):
        return self.kernel in ("spmspv", "spmspm")


def _shape_of(x):
    if scipy.sparse.issparse(x):
        return x.shape
    return np.shape(x)


def _pattern(x, cols):
    """``(cols, k)`` bool nonzero pattern of a vector or matrix operand, and whether
    it is a matrix."""
    if scipy.sparse.issparse(x):
        x = scipy.sparse.csc_matrix(x)
        if x.shape[0] == 1 and x.shape[1] != 1:
            x = x.T.tocsc()
            is_matrix = False
        else:
            is_matrix = x.shape[1] != 1
        rows = x.shape[0]
        pattern = np.zeros(x.shape, dtype=bool)
        xc = x.tocoo()
        pattern[xc.row, xc.col] = xc.data != 0
    else:
        array = np.asarray(x)
        if array.ndim not in (1, 2):
            raise CompileError(f"x must be a vector or a matrix, not {array.ndim}-D")
        is_matrix = array.ndim == 2
        pattern = (array != 0).reshape(array.shape[0], -1)
        rows = array.shape[0]
    if rows != cols:
        what = "rows" if is_matrix else "entries"
        raise CompileError(f"x has {rows} {what} but the matrix has {cols} columns")
    return pattern, is_matrix


def choose_kernel(x, cols, kernel="auto", *, rhs_columns=None):
    """The kernel ``kernel="auto"`` runs for the operand ``x`` (see :func:`compile_kernel`)."""
    return _operand(x, cols, kernel, rhs_columns).kernel


def _operand(x, cols, kernel, rhs_columns):
    if kernel not in KERNEL_CHOICES:
        raise CompileError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNEL_CHOICES)}")
    if rhs_columns is not None:
        rhs_columns = _check_int("rhs_columns", rhs_columns, 1, 1 << 20)
    pattern, is_matrix, density = None, False, None
    if x is not None:
        pattern, is_matrix = _pattern(x, cols)
        density = float(pattern.mean()) if pattern.size else 0.0
        if rhs_columns is not None and pattern.shape[1] != rhs_columns:
            raise CompileError(f"x has {pattern.shape[1]} columns but rhs_columns is "
                               f"{rhs_columns}")
    elif rhs_columns is not None:
        is_matrix = True
    if kernel == "auto":
        sparse = density is not None and density <= ACTIVATION_SPARSE
        if is_matrix:
            kernel = "spmspm" if sparse else "spmm"
        else:
            kernel = "spmspv" if sparse else "spmv"
    if kernel in ("spmv", "spmspv"):
        if is_matrix and (pattern is None or pattern.shape[1] != 1 or rhs_columns):
            k = rhs_columns if pattern is None else pattern.shape[1]
            raise CompileError(f"kernel {kernel} takes a vector but x is a {cols} x {k} "
                               f"matrix (use spmm or spmspm)")
        columns = 0
    else:
        if pattern is None and rhs_columns is None:
            raise CompileError(f"kernel {kernel} needs the right-hand matrix (x) or its "
                               f"number of columns (rhs_columns)")
        columns = pattern.shape[1] if pattern is not None else rhs_columns
    sparse = kernel in ("spmspv", "spmspm")
    if not sparse or pattern is None:
        pattern = None
    return _Operand(kernel, columns, pattern, density)


# Plans: one format's lane images for one band ----------------------------------------------------

@dataclasses.dataclass
class _ImageSet:
    """One column tile of a block: the lanes' images and their cost."""
    fmt: Format
    images: list
    x_start: int
    x_stop: int
    width: int               # columns the SPMV spans (the x slot it needs)
    cycles: int = 0          # row and dense formats: schedule length from rr = 0
    lane_n: np.ndarray = None        # CSC: rows per lane
    col_weights: np.ndarray = None   # CSC: (pes, width) max(entries, 1) per column

    def column_cycles(self, patterns, tail):
        """CSC: schedule length for each right-hand column (``patterns``: (cols, k))."""
        n = self.lane_n[:, None]
        if patterns is None:
            visits = self.col_weights.sum(axis=1)[:, None]
        else:
            visited = patterns[self.x_start:self.x_start + self.width].astype(np.int64)
            visits = self.col_weights @ visited
        total = n + visits + (n if tail else 0)
        return total.max(axis=0)


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
        return DATAFLOWS[self.fmt]

    @property
    def splits_rows(self):
        return any(block.reduce is not None for block in self.blocks)

    def run_cycles(self, patterns, count, tail):
        """Cycles of every ``SPMV`` and ``REDUCE`` for each of ``count`` right-hand columns."""
        total = np.zeros(count, dtype=np.int64)
        for block in self.blocks:
            for index, image_set in enumerate(block.sets):
                last = index == len(block.sets) - 1
                if self.fmt is Format.CSC:
                    total += timing.SPMV_OVERHEAD + image_set.column_cycles(
                        patterns, tail and last)
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
    return stride if stride <= config.x_depth else width


def _batch_size(block, config, epi, matrix, count):
    if not matrix:
        return 1
    rows = max(block.n_max, 1)
    limit = min(config.row_depth // rows, config.x_depth // _x_stride(block, config),
                (config.imem_depth - 1 - int(epi.applied)) // block.per_column)
    return max(1, min(count, limit))


def _stream_cycles(fmt, images, config):
    """Schedule length of one column tile from rr = 0 (row and dense formats)."""
    tokens = []
    for image in images:
        stream = decode_lane(fmt, image.ptr, image.nz, image.meta, ptr_base=0, nz_base=0,
                             x_base=0, out_base=0, config=config)
        tokens.append(stream.banks(0, config.x_banks))
    return timing.schedule(tokens, config.x_banks, cluster_lanes=config.cluster_lanes).cycles


def _row_set(fmt, parts, a, x_start, x_stop, config):
    """A column tile of CSR or COO rows: per lane ``(lengths, entries)`` in stored order."""
    images = [encode_lane(fmt, lengths, a.indices[entries] - x_start, a.data[entries], config,
                          width=x_stop - x_start) for lengths, entries in parts]
    if not any(len(image.nz) for image in images):
        x_start = x_stop = 0
    image_set = _ImageSet(fmt, images, x_start, x_stop, max(x_stop - x_start, 1))
    image_set.cycles = _stream_cycles(fmt, images, config)
    return image_set


def _whole_block(fmt, lane_rows, active_cts, a, counts, starts, width, config, bank_aware):
    """A block of whole rows (``lane_rows``: per lane, in local order) in CSR or COO."""
    cols = a.shape[1]
    sets = []
    for ct in active_cts:
        x_start = ct * width
        x_stop = min(cols, x_start + width)
        parts = [(counts[rows_p, ct], _ranges(starts[rows_p, ct], counts[rows_p, ct]))
                 for rows_p in lane_rows]
        if bank_aware:
            # Rows keep their out address across column tiles: reorder rows
            # only when the block has a single one.
            perms, parts = _bank_order(parts, a, x_start, config,
                                       reorder_rows=len(active_cts) == 1)
            lane_rows = [rows_p[perm] for rows_p, perm in zip(lane_rows, perms, strict=True)]
        sets.append(_row_set(fmt, parts, a, x_start, x_stop, config))
    return _Block(lane_rows, sets)


def _plan_csr(fmt, band, a, counts, starts, width, config, bank_aware):
    """The original CSR path for one band, whole rows (COO shares its order and its tokens)."""
    start, _stop, assign, active_cts = band
    lane_rows = [np.flatnonzero(assign == p) + start for p in range(config.pes)]
    return _Plan(fmt, [_whole_block(fmt, lane_rows, active_cts.tolist(), a, counts, starts,
                                    width, config, bank_aware)])


# Split rows --------------------------------------------------------------------------------------

def _pieces(work, lanes):
    """Pieces each row is cut into: ``ceil(work / fair share)``, so 1 unless the row
    is longer than a lane's fair share of the block's work (at least 1)."""
    work = np.asarray(work, dtype=np.int64)
    return -(-work * lanes // max(int(work.sum()), lanes))


def _plan_split(band, a, counts, starts, width, config, bank_aware, epi):
    """CSR for ``band`` (a single column tile) with the long rows split across lanes,
    or ``None`` when the split rows do not fit the memories."""
    start, stop, _assign, active_cts = band
    blocks = _split_blocks(np.arange(start, stop), int(active_cts[0]), a, counts, starts,
                           width, config, bank_aware, epi)
    return None if blocks is None else _Plan(Format.CSR, blocks)


def _split_blocks(rows, ct, *context):
    """:func:`_split_block` for ``rows``, halved until every part fits (``None``
    if a single row does not)."""
    block = _split_block(rows, ct, *context)
    if block is not None:
        return [block]
    if len(rows) == 1:
        return None
    middle = len(rows) // 2
    blocks = []
    for part in (rows[:middle], rows[middle:]):
        found = _split_blocks(part, ct, *context)
        if found is None:
            return None
        blocks += found
    return blocks


def _split_block(rows, ct, a, counts, starts, width, config, bank_aware, epi):
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
        return _whole_block(Format.CSR, [rows[assign == p] for p in range(lanes)], [ct], a,
                            counts, starts, width, config, bank_aware)
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
        return _whole_block(Format.CSR, own, [ct], a, counts, starts, width, config,
                            bank_aware)
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
    x_start = ct * width
    x_stop = min(a.shape[1], x_start + width)
    if bank_aware:
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
    """A format other than CSR/COO for the rows ``rows`` (one band)."""
    lanes = config.pes
    sub = a[rows]
    n_rows = len(rows)
    counts = np.zeros((n_rows, len(tiles)), dtype=np.int64)
    entry_rows = np.repeat(np.arange(n_rows), np.diff(sub.indptr))
    bounds = np.array([start for start, _ in tiles[1:]], dtype=np.int64)
    entry_tile = np.searchsorted(bounds, sub.indices, side="right")
    np.add.at(counts, (entry_rows, entry_tile), 1)
    widths = np.array([stop - start for start, stop in tiles], dtype=np.int64)
    cap = config.row_depth
    if fmt is Format.DENSE:
        spans = np.array([_dense_span(w, config) for w in widths], dtype=np.int64)
        memory = np.tile(spans, (n_rows, 1))
        work = np.full(n_rows, int(spans.sum()), dtype=np.int64)
    elif fmt is Format.NM:
        n, m = nm
        spans = -(-widths // m) * m
        slots = (-(-widths // m)) * n
        memory = np.tile(slots, (n_rows, 1))
        work = np.full(n_rows, int(np.maximum(slots, 1).sum()), dtype=np.int64)
    elif fmt is Format.BITMAP:
        spans = widths
        chunks = -(-widths // BITMAP_CHUNK)
        memory = np.maximum(counts, chunks[None, :])
        work = bitmap_row_cycles(counts, chunks[None, :]).sum(axis=1)
    else:   # CSC
        spans = widths
        memory = counts
        work = 1 + counts.sum(axis=1) + int(epi.tail)
        cap = config.row_depth
    blocks = []
    for block_rows, assign in _split_rows(np.arange(n_rows), work, memory, cap, config):
        lane_local = [block_rows[assign == p] for p in range(lanes)]
        block_counts = counts[block_rows]
        if fmt is Format.DENSE:
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
        if fmt is Format.CSC:
            for image_set in sets:
                image_set.lane_n = np.array([int(img.ptr[0]) for img in image_set.images],
                                            dtype=np.int64)
                weights = np.zeros((lanes, image_set.width), dtype=np.int64)
                for p, image in enumerate(image_set.images):
                    ends = image.ptr[2:].astype(np.int64)
                    weights[p, :len(ends)] = np.maximum(np.diff(ends, prepend=0), 1)
                image_set.col_weights = weights
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


def _dense_span(width, config):
    """DENSE tiles stream a multiple of ``x_banks`` columns when the x buffer allows:
    then the lanes, one column apart, never request one bank together."""
    banks = config.x_banks
    padded = -(-width // banks) * banks
    return padded if padded <= min(config.x_depth, config.nz_depth) else width


# Tiles -------------------------------------------------------------------------------------------

def _emit(plan, ks, epi, config, matrix, tiles_out, lane_entries):
    """Append the tiles that run ``plan`` for the right-hand columns ``ks``."""
    halt = encode_halt()
    has_bias = epi.bias is not None
    width = 4 if matrix else 3
    for block in plan.blocks:
        n_max = block.n_max
        stride = _x_stride(block, config)
        size = _batch_size(block, config, epi, matrix, len(ks))
        for first_k in range(0, len(ks), size):
            batch = ks[first_k:first_k + size]
            for index, image_set in enumerate(block.sets):
                first, last = index == 0, index == len(block.sets) - 1
                code = [epi.set_epi] if last and epi.applied else []
                for j in range(len(batch)):
                    x_base, out_base = (j * stride, j * n_max) if matrix else (0, 0)
                    if block.reduce is not None:
                        code += block.reduce.code(x_base, out_base, epi)
                    else:
                        code.append(encode_spmv(
                            fmt=image_set.fmt, x_base=x_base, out_base=out_base,
                            accumulate=not first, epilogue=last and epi.applied,
                            bias=last and has_bias))
                code.append(halt)
                bias = None
                if last and has_bias:
                    bias = []
                    for rows_p in block.lane_rows:
                        words = np.zeros((len(batch) - 1) * n_max + len(rows_p), dtype=np.int64)
                        for j in range(len(batch)):
                            words[j * n_max:j * n_max + len(rows_p)] = epi.bias[rows_p]
                        bias.append(words)
                meta = None
                if image_set.fmt in _META_FORMATS:
                    meta = [image.meta for image in image_set.images]
                loads = None
                if matrix:
                    loads = np.array([(j * stride, k, image_set.x_start, image_set.x_stop)
                                      for j, k in enumerate(batch)
                                      if image_set.x_stop > image_set.x_start],
                                     dtype=np.int64).reshape(-1, 4)
                parts = []
                if last:
                    for j, k in enumerate(batch):
                        for p, rows_p in enumerate(block.lane_rows):
                            columns = [np.full(len(rows_p), p), j * n_max + np.arange(len(rows_p)),
                                       rows_p]
                            if matrix:
                                columns.append(np.full(len(rows_p), k))
                            parts.append(np.stack(columns, axis=1))
                readback = (np.concatenate(parts) if parts else np.zeros((0, width))) \
                    .astype(np.int64).reshape(-1, width)
                tiles_out.append(Tile(
                    code=np.array(code, dtype=np.uint64),
                    ptr=[image.ptr for image in image_set.images],
                    nz=[image.nz for image in image_set.images], bias=bias,
                    x_cols=(image_set.x_start, image_set.x_stop), readback=readback,
                    meta=meta, x_loads=loads))
                for p, image in enumerate(image_set.images):
                    lane_entries[p] += len(batch) * len(image.nz)


# The cost model ----------------------------------------------------------------------------------

def _option(plan, operand, epi, config):
    """The predicted cost of one candidate: its report entry and per-column cycles."""
    count, matrix = operand.count, operand.columns > 0
    per_column = plan.run_cycles(operand.patterns if plan.fmt is Format.CSC else None,
                                 count, epi.tail)
    total = int(per_column.sum()) + plan.overhead(count, config, epi, matrix)
    note = ""
    if plan.split is not None and plan.split["cycles_split_rows"] is not None:
        info = plan.split
        if plan.splits_rows:
            note = (f"{info['long_rows']} long row(s) split into {info['pieces']} pieces "
                    f"(whole rows: {info['cycles_whole_rows']} cycles)")
        else:
            note = f"rows kept whole (split rows: {info['cycles_split_rows']} cycles)"
    return {"format": FORMAT_NAMES[plan.fmt], "dataflow": plan.dataflow, "cycles": total,
            "tiles": plan.tiles(count, config, epi, matrix), "note": note}, per_column


def _rank(fmt):
    return _PREFERENCE.index(fmt)


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
                                             if o["format"] == FORMAT_NAMES[f]), _rank(f)))
    winner = order[0]
    ks = list(range(count))
    choice = [(plans[winner], ks)]
    label = FORMAT_NAMES[winner]
    best = next(o["cycles"] for o in options if o["format"] == label)
    split = None
    row_formats = [f for f in order if f is not Format.CSC]
    if operand.sparse and count > 1 and Format.CSC in plans and row_formats:
        # Per right-hand column: column mode or the best row format.
        row = row_formats[0]
        row_cycles = per_column[row]
        column_cycles = per_column[Format.CSC]
        column = [k for k in ks if column_cycles[k] < row_cycles[k]]
        rows = [k for k in ks if column_cycles[k] >= row_cycles[k]]
        if column and rows:
            mixed = (int(row_cycles[rows].sum()) + int(column_cycles[column].sum())
                     + plans[row].overhead(len(rows), config, epi, matrix)
                     + plans[Format.CSC].overhead(len(column), config, epi, matrix))
            if mixed < best:
                choice = [(plans[row], rows), (plans[Format.CSC], column)]
                label = f"{FORMAT_NAMES[row]}+csc"
                best = mixed
                split = {FORMAT_NAMES[row]: rows, "csc": column}
                options.append({"format": label, "dataflow": "row+column", "cycles": mixed,
                                "tiles": plans[row].tiles(len(rows), config, epi, matrix)
                                + plans[Format.CSC].tiles(len(column), config, epi, matrix),
                                "note": f"{len(column)} of {count} right-hand columns in "
                                        f"column mode"})
    reason = None
    if Format.DENSE in plans and label != "dense":
        dense = next(o["cycles"] for o in options if o["format"] == "dense")
        if dense <= best * (1 + DENSE_MARGIN):
            saved = 100 * (dense - best) / dense if dense else 0.0
            reason = (f"dense: sparsity does not pay here — {label} would save only "
                      f"{saved:.2f} % of dense mode's {dense} predicted cycles (break-even "
                      f"{100 * DENSE_MARGIN:g} %), and dense mode decodes no indices")
            choice, label, best, split = [(plans[Format.DENSE], ks)], "dense", dense, None
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
    dense = next((o for o in options if o["format"] == "dense"), None)
    if winner == "dense":
        text += "; at this density the sparse formats stream nearly every entry anyway"
    elif dense is not None and dense is not runner:
        ratio = dense["cycles"] / best["cycles"] if best["cycles"] else 0.0
        text += f"; dense mode would take {dense['cycles']} ({ratio:.1f}x)"
    return text


def _consider_split(whole, band, split_rows, operand, epi, config, a, counts, starts, width,
                    bank_aware):
    """The CSR plan of ``band``: ``whole`` or, if the cost model (or ``split_rows=True``)
    prefers it, the plan that splits the long rows; its ``split`` records why."""
    info = _split_record(band, counts, config)
    whole.split = info
    if not info["long_rows"]:
        return whole
    if not config.reduce:
        info["reason"] = "the hardware has no scatter/reduce network (reduce=false)"
    elif split_rows is False:
        info["reason"] = "splitting is off (split_rows=False)"
    elif len(band[3]) != 1:
        info["reason"] = "x spans several column tiles (rows are split only in blocks with one)"
    if info["reason"]:
        return whole
    split = _plan_split(band, a, counts, starts, width, config, bank_aware, epi)
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
    if split_rows is True or cycles_split < cycles_whole:
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


# The compiler ------------------------------------------------------------------------------------

def compile_kernel(matrix, config, *, x=None, kernel="auto", fmt="auto", rhs_columns=None,
                   nm=NM_DEFAULT, prune_nm=False, bias=None, shift=0, relu=False, clamp=None,
                   epilogue=None, a_frac_bits=0, x_frac_bits=0, name="matrix", bank_aware=True,
                   band_rows=None, dense_baseline=True, split_rows="auto"):
    """Compile ``y = A @ x`` (a vector) or ``Y = A @ X`` (a matrix) for one configuration.

    Parameters
    ----------
    matrix : scipy.sparse matrix or 2-D array
        Integer values fitting the signed value width (already quantized).
        Explicit zeros are dropped.
    config : AcceleratorConfig
    x : array or scipy.sparse matrix, optional
        The right-hand operand, or a sample of it: a vector (1-D, or an
        ``n x 1`` / ``1 x n`` sparse matrix) or a matrix with one row per
        column of ``A``. Its shape picks the vector or matrix kernels and,
        for the sparse kernels, its nonzero pattern drives the cost model;
        the program computes the right result for any operand of that shape.
    kernel : str
        ``auto`` (default), ``spmv``, ``spmspv``, ``spmm`` or ``spmspm``.
        ``auto`` takes a matrix kernel for a matrix ``x`` (or ``rhs_columns``)
        and the sparse kernel when at most :data:`ACTIVATION_SPARSE` of ``x``
        is nonzero. Dense kernels assume every activation nonzero; the sparse
        ones may run column mode (CSC) where the activations' zeros pay.
    fmt : str
        ``auto`` (default: the cost model picks per row band among the
        configuration's formats) or a format name, which must be enabled.
    rhs_columns : int, optional
        Columns of the right-hand matrix when ``x`` is not given.
    nm : (int, int) or str
        The N:M structure of ``fmt="nm"`` (default 2:4); ``auto`` considers
        NM only for a matrix with that structure.
    prune_nm : bool
        Prune the matrix to N:M first (largest magnitudes kept) instead of
        rejecting a matrix without the structure for ``fmt="nm"``.
    bias : 1-D array of int, optional
        Added to each row at accumulator scale (before the epilogue).
    shift, relu, clamp, epilogue
        The epilogue: right shift (rounding to nearest), ReLU, clamp bounds
        (the value range by default); applied by default when ``shift``,
        ``relu`` or ``clamp`` is given, else the raw accumulator is read back.
    a_frac_bits, x_frac_bits : int
        Fixed-point scaling of the matrix and of the operand (recorded only).
    name : str
    bank_aware : bool
        CSR: order nonzeros to avoid input-vector bank conflicts.
    band_rows : int, optional
        Cap the rows of a band (the unit the cost model picks a format for).
    dense_baseline : bool
        Predict the cycles of dense mode for the same work
        (``program.dense_cycles``).
    split_rows : {"auto", True, False}
        CSR: split the rows longer than a lane's fair share across lanes and
        sum the pieces with ``REDUCE`` (needs ``config.reduce``). ``auto``
        (default) splits where the cost model predicts fewer cycles, ``True``
        wherever there are long rows and the pieces fit, ``False`` never.

    Returns
    -------
    Program

    Raises
    ------
    CompileError
        On values that are not integers or do not fit, a bias of the wrong
        length, invalid epilogue settings, a format the configuration lacks,
        a matrix that is not N:M structured for ``fmt="nm"``, an operand
        whose shape does not match the kernel or the matrix, or
        ``split_rows=True`` for hardware without the scatter/reduce network.
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    a = _matrix(matrix, config)
    rows, cols = a.shape
    epi = _epilogue_settings(config, rows, bias=bias, shift=shift, relu=relu, clamp=clamp,
                             epilogue=epilogue)
    for label, value in (("a_frac_bits", a_frac_bits), ("x_frac_bits", x_frac_bits)):
        _check_int(label, value, -64, 64)
    if not isinstance(name, str):
        raise CompileError(f"name must be a string, not {name!r}")
    if band_rows is not None:
        band_rows = _check_int("band_rows", band_rows, 1, 1 << 30)
    split_rows = _split_setting(split_rows, config)
    operand = _operand(x, cols, kernel, rhs_columns)
    nm = parse_nm(nm)
    report = {"kernel": operand.kernel, "format_request": str(fmt)}

    # Candidate formats.
    enabled = [f for f in Format if FORMAT_NAMES[f] in config.formats]
    if fmt == "auto":
        candidates = list(enabled)
    else:
        requested = format_by_name(fmt)
        if requested not in enabled:
            raise CompileError(f"format {FORMAT_NAMES[requested]!r} is not enabled in this "
                               f"configuration (formats: {', '.join(config.formats)})")
        candidates = [requested]
    notes = {}
    if prune_nm:
        a, removed = prune_nm_matrix(a, nm)
        report["pruned"] = removed
    if Format.NM in candidates:
        violation = nm_violation(a, *nm)
        problem = None
        if violation is not None:
            row, column, held = violation
            problem = (f"matrix is not {nm[0]}:{nm[1]} structured: row {row}, columns "
                       f"{column}-{column + nm[1] - 1} hold {held} nonzeros (use --prune-nm)")
        else:
            try:
                _check_nm(nm, config)
            except CompileError as error:
                problem = str(error)
        if problem is not None:
            if candidates == [Format.NM]:
                raise CompileError(problem)
            candidates.remove(Format.NM)
            notes[Format.NM] = problem
        report["nm"] = list(nm)

    # Row bands: the CSR blocks (row and nonzero memories), optionally capped.
    width = _column_width(a, config)
    n_ct = max(1, -(-cols // width))
    entry_rows = np.repeat(np.arange(rows), np.diff(a.indptr))
    counts = np.zeros((rows, n_ct), dtype=np.int64)
    np.add.at(counts, (entry_rows, a.indices // width), 1)
    # CSR columns are sorted, so each (row, column tile) is a contiguous run.
    starts = a.indptr[:-1, None] + np.cumsum(counts, axis=1) - counts
    bands = _bands(counts, config, band_rows)

    def build(fmt_, band):
        start, stop, _, _ = band
        if fmt_ in (Format.CSR, Format.COO):
            plan = _plan_csr(fmt_, band, a, counts, starts, width, config, bank_aware)
            if fmt_ is Format.CSR:
                plan = _consider_split(plan, band, split_rows, operand, epi, config, a, counts,
                                       starts, width, bank_aware)
            return plan
        if fmt_ is Format.DENSE:
            tile_width = min(width, config.nz_depth)
        elif fmt_ is Format.NM:
            tile_width = width
            while tile_width > nm[1] and tile_width * nm[0] // nm[1] > config.nz_depth:
                tile_width //= 2
        elif fmt_ is Format.CSC:
            tile_width = min(width, config.row_depth - 2)
        else:
            tile_width = width
        return _plan_generic(fmt_, np.arange(start, stop), a, _column_tiles(cols, tile_width),
                             config, epi, nm)

    matrix_kernel = operand.columns > 0
    ks = list(range(operand.count))
    tiles, dense_tiles = [], []
    lane_entries = np.zeros(config.pes, dtype=np.int64)
    dense_entries = np.zeros(config.pes, dtype=np.int64)
    band_reports, splits = [], []
    for band in bands:
        plans = {f: build(f, band) for f in candidates}
        choice, band_report = _choose(plans, operand, epi, config)
        start, stop = int(band[0]), int(band[1])
        band_report.update({"rows": [start, stop],
                            "nnz": int(a.indptr[stop] - a.indptr[start])})
        splits.append(_band_split(plans, choice, band_report["winner"], band, counts, config))
        for f, note in notes.items():
            band_report["options"].append({"format": FORMAT_NAMES[f],
                                           "dataflow": DATAFLOWS[f], "cycles": None,
                                           "tiles": 0, "note": note})
        band_reports.append(band_report)
        for plan, columns in choice:
            _emit(plan, columns, epi, config, matrix_kernel, tiles, lane_entries)
    if dense_baseline and rows:
        # Dense mode needs no bands: its blocks follow its own memory limits.
        dense = build(Format.DENSE, (0, rows, None, None))
        _emit(dense, ks, epi, config, matrix_kernel, dense_tiles, dense_entries)
    report["bands"] = band_reports
    report["balance"] = _balance(bands, counts, config, splits)

    program = Program(config=config, shape=(rows, cols), nnz=int(a.nnz), tiles=tiles,
                      a_frac_bits=int(a_frac_bits), x_frac_bits=int(x_frac_bits),
                      epilogue=epi.record(), lane_nnz=lane_entries, name=name,
                      kernel=operand.kernel, rhs_columns=operand.columns, report=report)
    if dense_baseline:
        dense_program = Program(config=config, shape=(rows, cols), nnz=int(a.nnz),
                                tiles=dense_tiles, epilogue=epi.record(),
                                lane_nnz=dense_entries, kernel=operand.kernel,
                                rhs_columns=operand.columns)
        report["dense_cycles"] = int(dense_program.predicted_cycles())
        report["dense_source"] = "predicted by the ISA model's timing rules"
    report["summary"] = _summary(program)
    return program


def _split_setting(split_rows, config):
    if isinstance(split_rows, str) and split_rows == "auto":
        return split_rows
    if not isinstance(split_rows, (bool, np.bool_)):
        raise CompileError(f"split_rows must be 'auto', True or False, not {split_rows!r}")
    if split_rows and not config.reduce:
        raise CompileError("split_rows=True needs the scatter/reduce network, which this "
                           "configuration lacks (reduce=false)")
    return bool(split_rows)


def _band_split(plans, choice, winner, band, counts, config):
    """The split record of one band: its CSR plan's, and whether the program uses it."""
    csr = plans.get(Format.CSR)
    if csr is None:
        return _split_record(band, counts, config, "rows are split only in CSR, which this "
                                                   "compilation does not use")
    info = dict(csr.split)
    if info["split"] and not any(plan is csr for plan, _ in choice):
        info.update(split=False, reason=f"the band runs {winner}, not CSR")
    return info


def prune_nm_matrix(a, nm):
    """Prune ``a`` (CSR, int64) to N:M; returns ``(pruned matrix, entries removed)``."""
    pruned, removed = prune_nm(a, *nm)
    pruned = scipy.sparse.csr_matrix(pruned, dtype=np.int64)
    pruned.sort_indices()
    return pruned, removed


def _bands(counts, config, band_rows):
    bands = []
    for start, stop, assign, active in _blocks(counts, config):
        if band_rows is None or stop - start <= band_rows:
            bands.append((start, stop, assign, active))
            continue
        cap = config.row_depth - 1
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


def _summary(program):
    report = program.report
    lines = []
    for index, band in enumerate(report.get("bands", [])):
        start, stop = band["rows"]
        options = ", ".join(f"{o['format']} {o['cycles']}" for o in band["options"]
                            if o["cycles"] is not None)
        lines.append(f"band {index}: rows {start}-{stop - 1}: {band['winner']} "
                     f"({band['cycles']} cycles predicted; options: {options})")
    balance = report.get("balance")
    if balance:
        lines.append(f"balance: {balance['long_rows']} row(s) longer than a lane's share; "
                     f"CV of whole rows {balance['cv_whole_rows']:.3f}, "
                     f"{balance['cv_split_rows']:.3f} with them split; {balance['note']}")
    return lines


def compile_spmv(matrix, config, *, bias=None, shift=0, relu=False, clamp=None, epilogue=None,
                 a_frac_bits=0, x_frac_bits=0, name="matrix", bank_aware=True, fmt="auto",
                 x=None, nm=NM_DEFAULT, prune_nm=False, band_rows=None, dense_baseline=False,
                 split_rows="auto"):
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
    fmt, x, nm, prune_nm, band_rows, dense_baseline, split_rows
        As for :func:`compile_kernel`; ``x`` (a vector) makes the kernel
        SpMSpV when it is sparse. With the default configuration (CSR only)
        the program is the classic CSR SpMV.

    Returns
    -------
    Program

    Raises
    ------
    CompileError
        On values that are not integers or do not fit, a bias of the wrong
        length, invalid epilogue settings, or ``split_rows=True`` for
        hardware without the scatter/reduce network.
    """
    if x is not None and len(_shape_of(x)) == 2 and 1 not in _shape_of(x):
        raise CompileError("compile_spmv takes a vector x; use compile_kernel for a matrix")
    return compile_kernel(matrix, config, x=x, kernel="auto", fmt=fmt, nm=nm,
                          prune_nm=prune_nm, bias=bias, shift=shift, relu=relu, clamp=clamp,
                          epilogue=epilogue, a_frac_bits=a_frac_bits, x_frac_bits=x_frac_bits,
                          name=name, bank_aware=bank_aware, band_rows=band_rows,
                          dense_baseline=dense_baseline, split_rows=split_rows)
