"""Storage formats of a lane's tile: encoders, the decoder and matrix converters.

Every ``SPMV`` reads one lane's tile in the format its ``fmt`` field names
(:class:`~.isa.Format`; the layouts are defined in :mod:`.isa`). This module
holds, once for the whole firmware:

- :func:`encode_lane`: a lane's rows (a small CSR sub-matrix, columns relative
  to the tile) to its ``ptr``/``nz``/``meta`` memory images in any format;
- :func:`decode_lane`: what the format decoder streams from those memories for
  one instruction: the entries in stream order and the token sequence of the
  timing contract (``docs/internals.md``), with the descriptor checks that
  stop the hardware with ``DESCRIPTOR``. The ISA model executes it and the
  programs' cycle prediction replays it;
- :func:`decode_routes`: the lanes' ``REDUCE`` route lists, with the descriptor
  checks of ``REDUCE``;
- :func:`lane_matrix`: the inverse of :func:`encode_lane` (a decoded image back
  to a sparse matrix), so every format round-trips;
- :func:`nm_violation` and :func:`prune_nm`: the N:M structure check (with the
  exact offending group) and magnitude pruning to N:M.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import scipy.sparse

from zeroskip.arith import sign_extend
from zeroskip.errors import CompileError
from zeroskip.isa import BITMAP_CHUNK, META_WIDTH, Format, NmWord, nz_entry_layout

__all__ = [
    "FORMAT_NAMES", "DATAFLOWS", "format_by_name", "format_name", "dataflow_of", "LaneImage",
    "LaneStream", "DescriptorFault", "encode_lane", "decode_lane", "lane_matrix",
    "row_formats", "pack_entries", "unpack_entries", "nm_violation", "prune_nm",
    "nm_descriptor", "nm_of_descriptor", "bitmap_row_cycles", "parse_nm", "RouteList",
    "decode_routes",
]

#: Lower-case names of the formats, as the configuration and the CLI spell them.
FORMAT_NAMES = {Format.CSR: "csr", Format.COO: "coo", Format.BITMAP: "bitmap",
                Format.NM: "nm", Format.DENSE: "dense", Format.CSC: "csc"}
_BY_NAME = {name: fmt for fmt, name in FORMAT_NAMES.items()}

#: The dataflow each format runs: ``row`` mode streams rows through the gather
#: network, ``dense`` streams every entry, ``column`` mode (CSC) visits only
#: the columns with a nonzero activation.
DATAFLOWS = {Format.CSR: "row", Format.COO: "row", Format.BITMAP: "row", Format.NM: "row",
             Format.DENSE: "dense", Format.CSC: "column"}


def format_by_name(name):
    """The :class:`~.isa.Format` called ``name`` (``"csr"``, ``"nm"``, ...)."""
    try:
        return _BY_NAME[str(name).lower()]
    except KeyError:
        raise CompileError(f"unknown format {name!r}; known: {', '.join(_BY_NAME)}") from None


def format_name(fmt):
    return FORMAT_NAMES[Format(fmt)]


def dataflow_of(fmt):
    return DATAFLOWS[Format(fmt)]


def row_formats():
    """The formats that run in row mode or dense mode (through the gather network)."""
    return [fmt for fmt in Format if fmt is not Format.CSC]


@functools.lru_cache(maxsize=64)
def _fields(config):
    return {name: field for name, field in nz_entry_layout(config)}


def pack_entries(cols, values, config):
    """Pack columns and values into nonzero-memory words (``nz_entry_layout``)."""
    fields = _fields(config)
    col, value = fields["col"], fields["value"]
    cols = np.asarray(cols, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    words = ((cols & ((1 << col.width) - 1)) << col.offset
             | (values & ((1 << value.width) - 1)) << value.offset)
    return words.astype(np.uint32)


def unpack_entries(words, config):
    """Split nonzero-memory words into ``(cols, values)`` (both ``int64``)."""
    fields = _fields(config)
    col, value = fields["col"], fields["value"]
    words = np.asarray(words, dtype=np.int64)
    cols = (words >> col.offset) & ((1 << col.width) - 1)
    values = sign_extend(words >> value.offset, value.width)
    return cols, values


@dataclasses.dataclass
class LaneImage:
    """A lane's memory images for one tile (from address 0).

    Attributes
    ----------
    ptr, nz, meta : numpy.ndarray of uint32
        Row-pointer, nonzero and meta words (``meta`` may be empty).
    """

    ptr: np.ndarray
    nz: np.ndarray
    meta: np.ndarray


def nm_descriptor(n, m):
    """The ``ptr[ptr_base + 2]`` word of an N:M tile (:class:`~zeroskip.isa.NmWord`)."""
    return NmWord.const({"n": n, "log2_m": m.bit_length() - 1}).as_bits()


def nm_of_descriptor(word):
    """``(N, M)`` of an N:M descriptor word (the bits above :class:`~zeroskip.isa.NmWord`
    are ignored)."""
    layout = NmWord.as_shape()
    n, log2_m = (word >> field.offset & ((1 << field.width) - 1)
                 for field in (layout["n"], layout["log2_m"]))
    return n, 1 << log2_m


def bitmap_row_cycles(bits, chunks):
    """Expected cycles of one BITMAP row: its set bits plus one per all-zero chunk.

    The decoder spends ``max(set bits, 1)`` cycles on each chunk; with the
    bits spread uniformly a row of ``bits`` set bits over ``C`` chunks has
    about ``C * (1 - 1/C) ** bits`` all-zero chunks (the cost model's
    estimate; :func:`decode_lane` gives the exact tokens).
    """
    bits = np.asarray(bits, dtype=np.float64)
    chunks = np.asarray(chunks, dtype=np.float64)
    safe = np.maximum(chunks, 1)
    empty = np.where(chunks > 0, safe * (1 - 1 / safe) ** bits, 0)
    return np.maximum(np.ceil(bits + empty), 1).astype(np.int64)


def _starts(lengths):
    return np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64) if len(lengths) \
        else np.zeros(0, dtype=np.int64)


def encode_lane(fmt, lengths, cols, values, config, *, width, nm=None):
    """Encode one lane's rows in ``fmt``.

    Parameters
    ----------
    fmt : Format
    lengths : array of int
        Entries of each local row, in the lane's row order.
    cols, values : array of int
        The entries, row after row; columns relative to the tile's first
        column (``0 <= col < width``). CSR and COO keep this order; the other
        formats store a row's entries by column.
    config : AcceleratorConfig
    width : int
        Columns of the tile (``L``).
    nm : (int, int), optional
        ``(N, M)`` for :attr:`~.isa.Format.NM`; every aligned group of ``M``
        columns of a row must hold at most ``N`` entries.

    Returns
    -------
    LaneImage
    """
    fmt = Format(fmt)
    lengths = np.asarray(lengths, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    n = len(lengths)
    rows = np.repeat(np.arange(n), lengths)
    empty = np.zeros(0, dtype=np.uint32)
    if fmt is Format.CSR:
        ptr = np.concatenate(([n], np.cumsum(lengths))).astype(np.uint32)
        return LaneImage(ptr, pack_entries(cols, values, config), empty)
    if fmt is Format.COO:
        ptr = np.array([n, len(cols)], dtype=np.uint32)
        return LaneImage(ptr, pack_entries(cols, values, config), rows.astype(np.uint32))
    # The other formats store a row's entries by column.
    order = np.lexsort((cols, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    if fmt is Format.DENSE:
        dense = np.zeros((n, width), dtype=np.int64)
        dense[rows, cols] = values
        ptr = np.array([n, width], dtype=np.uint32)
        return LaneImage(ptr, pack_entries(np.zeros(n * width, dtype=np.int64),
                                           dense.reshape(-1), config), empty)
    if fmt is Format.BITMAP:
        chunks = -(-width // BITMAP_CHUNK)
        words = np.zeros(n * chunks, dtype=np.int64)
        np.bitwise_or.at(words, rows * chunks + cols // BITMAP_CHUNK,
                         np.left_shift(1, cols % BITMAP_CHUNK))
        ptr = np.array([n, chunks], dtype=np.uint32)
        return LaneImage(ptr, pack_entries(np.zeros(len(values), dtype=np.int64), values,
                                           config), words.astype(np.uint32))
    if fmt is Format.NM:
        if nm is None:
            raise ValueError("the NM format needs nm=(N, M)")
        big_n, m = nm
        groups = -(-width // m)
        slots = groups * big_n
        group = cols // m
        key = rows * groups + group
        # rank of each entry inside its (row, group): entries are sorted by (row, col)
        first = np.searchsorted(key, key, side="left")
        rank = np.arange(len(key)) - first
        if len(rank) and rank.max() >= big_n:
            raise ValueError("a group holds more than N entries")
        slot_cols = np.zeros((n * groups, big_n), dtype=np.int64)
        slot_values = np.zeros((n * groups, big_n), dtype=np.int64)
        # Padding slots take columns of their group inside the tile, unused ones first.
        used = np.zeros((n * groups, m), dtype=np.int64)
        used[key, cols % m] = 1
        outside = (np.arange(groups)[:, None] * m + np.arange(m)[None, :]) >= width
        used[np.tile(outside, (n, 1))] = 2
        free = np.argsort(used, axis=1, kind="stable")
        inside = np.maximum((~outside).sum(axis=1), 1)
        counts = np.bincount(key, minlength=n * groups) if n * groups else \
            np.zeros(0, dtype=np.int64)
        pad_rank = np.arange(big_n)[None, :] - counts[:, None]
        pad = pad_rank >= 0
        which = np.nonzero(pad)[0]
        slot_cols[pad] = free[which, pad_rank[pad] % np.tile(inside, n)[which]]
        slot_cols[key, rank] = cols % m
        slot_values[key, rank] = values
        ptr = np.array([n, groups, nm_descriptor(big_n, m)], dtype=np.uint32)
        nz = pack_entries(slot_cols.reshape(-1), slot_values.reshape(-1), config)
        assert len(nz) == n * slots
        return LaneImage(ptr, nz, empty)
    # CSC: columns in order, a column's entries by row.
    order = np.lexsort((rows, cols))
    rows, cols, values = rows[order], cols[order], values[order]
    ends = np.cumsum(np.bincount(cols, minlength=width)) if width else np.zeros(0, np.int64)
    ptr = np.concatenate(([n, width], ends)).astype(np.uint32)
    return LaneImage(ptr, pack_entries(np.zeros(len(values), dtype=np.int64), values, config),
                     rows.astype(np.uint32))


class DescriptorFault(Exception):
    """A descriptor or stored word reaching outside a memory (``DESCRIPTOR``)."""


@dataclasses.dataclass
class LaneStream:
    """What one lane's format decoder streams for one ``SPMV``.

    Attributes
    ----------
    fmt : Format
    n : int
        Rows of the lane (``ptr[ptr_base]``).
    rows, cols, values : numpy.ndarray of int64
        Every stored entry in stream order: local row, column relative to
        ``x_base`` and value. Row formats stream row after row; CSC streams
        column after column.
    tokens : numpy.ndarray of int64 or None
        Row and dense formats: per token of the timing contract, the index of
        its entry, or ``-1`` for a token without a bank request (an empty row,
        a BITMAP scan cycle). ``None`` for CSC.
    col_ends : numpy.ndarray of int64 or None
        CSC: end (exclusive) of each column's entries.
    """

    fmt: Format
    n: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    tokens: np.ndarray | None = None
    col_ends: np.ndarray | None = None

    def banks(self, x_base, x_banks):
        """The token sequence as :func:`.timing.schedule` takes it."""
        tokens = self.tokens
        banks = np.full(len(tokens), -1, dtype=np.int64)
        real = tokens >= 0
        banks[real] = (x_base + self.cols[tokens[real]]) % x_banks
        return banks

    def check_bases(self, x_base, out_base, config):
        """Raise :class:`DescriptorFault` if ``x_base``/``out_base`` put this tile
        outside the ``x`` or ``out`` memories."""
        if out_base + self.n > config.row_depth:
            raise DescriptorFault("output range")
        if self.col_ends is not None:
            if x_base + len(self.col_ends) > config.x_depth:
                raise DescriptorFault("columns")
        elif len(self.cols) and x_base + int(self.cols.max()) >= config.x_depth:
            raise DescriptorFault("x address")

    def row_ends(self):
        """End of each local row's entries (the entries are in row order)."""
        return np.cumsum(np.bincount(self.rows, minlength=self.n)) if self.n else \
            np.zeros(0, dtype=np.int64)


def _read(memory, start, count):
    """``memory[start:start + count]`` as int64, zeros past the end of an image."""
    part = np.asarray(memory[start:start + count], dtype=np.int64)
    if len(part) < count:
        part = np.concatenate((part, np.zeros(count - len(part), dtype=np.int64)))
    return part


def _word(memory, index):
    return int(memory[index]) if index < len(memory) else 0


def _row_tokens(lengths, minimum):
    """Token entries of rows streamed one after another.

    Row ``i`` streams its ``lengths[i]`` entries and then ``-1`` tokens until
    it has taken ``minimum`` (scalar or per row) tokens.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if np.ndim(minimum) == 0 and minimum == 1:
        # Every entry in order, and one -1 where each empty row sits.
        entries = np.arange(int(lengths.sum()), dtype=np.int64)
        empty = np.flatnonzero(lengths == 0)
        if len(empty):
            entries = np.insert(entries, _starts(lengths)[empty], -1)
        return entries
    per_row = np.maximum(lengths, minimum)
    total = int(per_row.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    token_start = np.repeat(_starts(per_row), per_row)
    offset = np.arange(total) - token_start
    row_len = np.repeat(lengths, per_row)
    entry = np.repeat(_starts(lengths), per_row) + offset
    return np.where(offset < row_len, entry, -1)


def decode_lane(fmt, ptr, nz, meta, *, ptr_base, nz_base, x_base, out_base, config):
    """Decode one lane's tile the way the format decoder streams it.

    Parameters
    ----------
    fmt : Format
    ptr, nz, meta : array of int
        The lane's memories (or images from address 0; words past an image
        read 0).
    ptr_base, nz_base, x_base, out_base : int
        The instruction's operands.
    config : AcceleratorConfig

    Returns
    -------
    LaneStream

    Raises
    ------
    DescriptorFault
        When the descriptor or a stored word reaches outside a memory.
    """
    c = config
    fmt = Format(fmt)
    n = _word(ptr, ptr_base)
    header = {Format.CSR: 1 + n, Format.COO: 2, Format.BITMAP: 2, Format.NM: 3,
              Format.DENSE: 2, Format.CSC: 2}[fmt]
    if ptr_base + header > c.row_depth:
        raise DescriptorFault("descriptor")
    if fmt is Format.CSR:
        ends = _read(ptr, ptr_base + 1, n)
        if n and (np.any(np.diff(ends) < 0) or nz_base + int(ends[-1]) > c.nz_depth):
            raise DescriptorFault("row end")
        total = int(ends[-1]) if n else 0
        cols, values = unpack_entries(_read(nz, nz_base, total), c)
        lengths = np.diff(ends, prepend=0)
        rows = np.repeat(np.arange(n), lengths)
        tokens = _row_tokens(lengths, 1)
    elif fmt is Format.COO:
        total = _word(ptr, ptr_base + 1)
        if nz_base + total > c.nz_depth:
            raise DescriptorFault("entries")
        rows = _read(meta, nz_base, total) & ((1 << META_WIDTH) - 1)
        if total and (rows.max() >= n or np.any(np.diff(rows) < 0)):
            raise DescriptorFault("row")
        cols, values = unpack_entries(_read(nz, nz_base, total), c)
        tokens = _row_tokens(np.bincount(rows, minlength=n) if n else rows, 1)
    elif fmt is Format.BITMAP:
        chunks = _word(ptr, ptr_base + 1)
        if nz_base + n * chunks > c.nz_depth:
            raise DescriptorFault("bitmap")
        words = _read(meta, nz_base, n * chunks).reshape(n, chunks)
        bits = (words[:, :, None] >> np.arange(BITMAP_CHUNK)) & 1
        rows, cols = np.nonzero(bits.reshape(n, chunks * BITMAP_CHUNK))
        rows, cols = rows.astype(np.int64), cols.astype(np.int64)
        total = len(cols)
        if nz_base + total > c.nz_depth:
            raise DescriptorFault("entries")
        _, values = unpack_entries(_read(nz, nz_base, total), c)
        if chunks:
            # Chunk by chunk: its set bits, or one token without a product.
            per_chunk = bits.reshape(n * chunks, BITMAP_CHUNK).sum(axis=1)
            tokens = _row_tokens(per_chunk, 1)
        else:
            tokens = _row_tokens(np.zeros(n, dtype=np.int64), 1)
    elif fmt is Format.NM:
        groups = _word(ptr, ptr_base + 1)
        big_n, m = nm_of_descriptor(_word(ptr, ptr_base + 2))
        slots = groups * big_n
        total = n * slots
        if nz_base + total > c.nz_depth:
            raise DescriptorFault("slots")
        fields, values = unpack_entries(_read(nz, nz_base, total), c)
        index = np.arange(total)
        rows = index // slots if slots else index
        cols = ((index % slots) // big_n) * m + fields if slots else index
        tokens = _row_tokens(np.full(n, slots, dtype=np.int64), 1)
    elif fmt is Format.DENSE:
        width = _word(ptr, ptr_base + 1)
        total = n * width
        if nz_base + total > c.nz_depth:
            raise DescriptorFault("entries")
        _, values = unpack_entries(_read(nz, nz_base, total), c)
        index = np.arange(total)
        rows = index // width if width else index
        cols = index % width if width else index
        tokens = _row_tokens(np.full(n, width, dtype=np.int64), 1)
    else:
        columns = _word(ptr, ptr_base + 1)
        if ptr_base + 2 + columns > c.row_depth:
            raise DescriptorFault("columns")
        ends = _read(ptr, ptr_base + 2, columns)
        if columns and (np.any(np.diff(ends) < 0) or nz_base + int(ends[-1]) > c.nz_depth):
            raise DescriptorFault("column end")
        total = int(ends[-1]) if columns else 0
        rows = _read(meta, nz_base, total) & ((1 << META_WIDTH) - 1)
        if total and rows.max() >= n:
            raise DescriptorFault("row")
        _, values = unpack_entries(_read(nz, nz_base, total), c)
        cols = np.repeat(np.arange(columns), np.diff(ends, prepend=0))
        stream = LaneStream(fmt, n, rows, cols, values, None, ends)
        stream.check_bases(x_base, out_base, c)
        return stream
    stream = LaneStream(fmt, n, rows.astype(np.int64), cols.astype(np.int64),
                        values.astype(np.int64), tokens)
    stream.check_bases(x_base, out_base, c)
    return stream


@dataclasses.dataclass
class CsrLanes:
    """What every lane's decoder streams for one CSR ``SPMV``, all lanes at once.

    Attributes
    ----------
    n : numpy.ndarray of int64
        Rows of each lane.
    row_lane, row_local : numpy.ndarray of int64
        Lane and local row of every row, lane after lane.
    row_ends : numpy.ndarray of int64
        End (exclusive) of each row's entries in ``cols``/``values``.
    cols, values : numpy.ndarray of int64
        Every entry, lane after lane, row after row (columns relative to
        ``x_base``).
    tokens : list of numpy.ndarray of int64
        Per lane, the token sequence :func:`.timing.schedule` takes (banks,
        ``-1`` per empty row).
    """

    n: np.ndarray
    row_lane: np.ndarray
    row_local: np.ndarray
    row_ends: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    tokens: list


def decode_csr_lanes(ptr, nz, *, ptr_base, nz_base, x_base, out_base, config):
    """:func:`decode_lane` for CSR on every lane at once (the model's fast path).

    ``ptr`` and ``nz`` are the lanes' whole memories, ``(pes, row_depth)`` and
    ``(pes, nz_depth)``. Raises :class:`DescriptorFault` when any lane's would.
    """
    c = config
    ptr = np.asarray(ptr, dtype=np.int64)
    nz = np.asarray(nz, dtype=np.int64)
    lanes = ptr.shape[0]
    if ptr_base + 1 > c.row_depth:
        raise DescriptorFault("descriptor")
    n = ptr[:, ptr_base].copy()
    if ptr_base + 1 + int(n.max(initial=0)) > c.row_depth:
        raise DescriptorFault("descriptor")
    width = int(n.max(initial=0))
    present = np.arange(width)[None, :] < n[:, None]
    ends = ptr[:, ptr_base + 1:ptr_base + 1 + width]
    lengths = np.diff(ends, axis=1, prepend=0)
    if (lengths[present] < 0).any():
        raise DescriptorFault("row end")
    totals = np.where(n > 0, ends[np.arange(lanes), np.maximum(n - 1, 0)] if width else 0, 0)
    if (nz_base + totals > c.nz_depth).any():
        raise DescriptorFault("row end")
    if (out_base + n > c.row_depth).any():
        raise DescriptorFault("output range")
    row_lane = np.repeat(np.arange(lanes), n)
    row_local = np.arange(len(row_lane)) - np.repeat(_starts(n), n)
    row_lengths = lengths[present]
    row_ends = np.cumsum(row_lengths)
    entry_lane = np.repeat(row_lane, row_lengths)
    offset = np.arange(len(entry_lane)) - np.repeat(_starts(totals), totals)
    cols, values = unpack_entries(nz[entry_lane, nz_base + offset], c)
    if len(cols) and x_base + int(cols.max()) >= c.x_depth:
        raise DescriptorFault("x address")
    # Tokens: each entry's bank, and -1 where an empty row sits.
    per_row = np.maximum(row_lengths, 1)
    token_start = _starts(per_row)
    banks = np.full(int(per_row.sum()), -1, dtype=np.int64)
    entry_row = np.repeat(np.arange(len(row_lengths)), row_lengths)
    banks[token_start[entry_row] + np.arange(len(cols)) - _starts(row_lengths)[entry_row]] = \
        (x_base + cols) % c.x_banks
    lane_tokens = np.bincount(row_lane, weights=per_row, minlength=lanes).astype(np.int64)
    tokens = np.split(banks, np.cumsum(lane_tokens)[:-1])
    return CsrLanes(n, row_lane, row_local, row_ends, cols, values, tokens)


@dataclasses.dataclass
class RouteList:
    """One lane's ``REDUCE`` routes (see :mod:`.isa`).

    Attributes
    ----------
    source : int
        The lane's first source row ``s`` (relative to ``src_base``).
    lanes, rows : numpy.ndarray of int64
        Destination lane ``q`` and row ``r`` (relative to ``dst_base``) of
        each route, in route order.
    """

    source: int
    lanes: np.ndarray
    rows: np.ndarray


def decode_routes(ptrs, args, config):
    """Decode every lane's ``REDUCE`` route list the way the scatter network reads it.

    Parameters
    ----------
    ptrs : sequence of array of int
        Per lane, its row-pointer memory (or its image from address 0).
    args : dict
        The ``REDUCE``'s operands (``ptr_base``, ``src_base``, ``dst_base``).
    config : AcceleratorConfig

    Returns
    -------
    list of RouteList
        One per lane.

    Raises
    ------
    DescriptorFault
        When a route list, the source rows or a destination reach outside a
        memory or the lanes.
    """
    c = config
    ptr_base, src_base, dst_base = args["ptr_base"], args["src_base"], args["dst_base"]
    found = []
    for ptr in ptrs:
        count = _word(ptr, ptr_base)
        source = _word(ptr, ptr_base + 1)
        if ptr_base + 2 + count > c.row_depth or src_base + source + count > c.row_depth:
            raise DescriptorFault("route list")
        words = _read(ptr, ptr_base + 2, count)
        rows = words & ((1 << c.row_addr_width) - 1)
        lanes = words >> c.row_addr_width
        if count and (int(lanes.max()) >= c.pes or dst_base + int(rows.max()) >= c.row_depth):
            raise DescriptorFault("route")
        found.append(RouteList(source, lanes, rows))
    return found


def lane_matrix(fmt, image, config, *, width):
    """The sparse matrix (rows x ``width``) a lane image holds (explicit zeros dropped).

    The inverse of :func:`encode_lane`: ``lane_matrix(f, encode_lane(f, ...))``
    is the lane's sub-matrix in the lane's row order.
    """
    # Memories as deep as the configuration allows: the images alone bound the tile.
    roomy = config.replace(row_depth=4096, nz_depth=65536)
    stream = decode_lane(fmt, image.ptr, image.nz, image.meta, ptr_base=0, nz_base=0,
                         x_base=0, out_base=0, config=roomy)
    keep = stream.values != 0
    matrix = scipy.sparse.coo_matrix(
        (stream.values[keep], (stream.rows[keep], stream.cols[keep])),
        shape=(stream.n, width)).tocsr()
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def parse_nm(value):
    """``"2:4"`` or ``(2, 4)`` to ``(N, M)``: ``1 <= N <= M < 256``, ``M`` a power of two.

    Raises
    ------
    CompileError
    """
    text = value
    if isinstance(value, str):
        try:
            value = tuple(int(part) for part in value.split(":"))
        except ValueError:
            value = ()
    try:
        n, m = value
        n, m = int(n), int(m)
    except (TypeError, ValueError):
        raise CompileError(f"N:M must look like 2:4, not {text!r}") from None
    if not (1 <= n <= m < 256 and m & (m - 1) == 0):
        raise CompileError(f"N:M needs 1 <= N <= M < 256 with M a power of two, not {n}:{m}")
    return n, m


def nm_violation(matrix, n, m):
    """The first aligned group of ``m`` columns holding more than ``n`` entries.

    Returns
    -------
    (row, first column, count) or None
    """
    a = scipy.sparse.csr_matrix(matrix)
    if a.nnz == 0:
        return None
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    groups = -(-a.shape[1] // m)
    key = rows.astype(np.int64) * groups + a.indices // m
    counts = np.bincount(key)
    bad = np.flatnonzero(counts > n)
    if not len(bad):
        return None
    first = int(bad[0])
    return first // groups, (first % groups) * m, int(counts[first])


def prune_nm(matrix, n, m):
    """Keep the ``n`` largest-magnitude entries of every aligned group of ``m`` columns.

    Ties keep the lower column. Returns ``(pruned CSR matrix, entries removed)``.
    """
    a = scipy.sparse.csr_matrix(matrix, copy=True)
    a.sum_duplicates()
    a.eliminate_zeros()
    if a.nnz == 0:
        return a, 0
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr)).astype(np.int64)
    groups = -(-a.shape[1] // m)
    key = rows * groups + a.indices // m
    order = np.lexsort((a.indices, -np.abs(a.data), key))
    sorted_key = key[order]
    first = np.searchsorted(sorted_key, sorted_key, side="left")
    rank = np.arange(len(order)) - first
    keep = np.zeros(a.nnz, dtype=bool)
    keep[order[rank < n]] = True
    pruned = scipy.sparse.csr_matrix((a.data[keep], (rows[keep], a.indices[keep])),
                                     shape=a.shape)
    return pruned, int(a.nnz - keep.sum())
