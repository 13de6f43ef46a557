"""N:M: ``G * N`` slots per row in ``nz``, every group of ``M`` columns holding at
most ``N`` entries, and the descriptor word :class:`~zeroskip.core.isa.NmWord` (see
:data:`zeroskip.core.formatspec.SPECS`). Also the structure check, the pruning to
N:M and the parsing of ``"N:M"``."""

from __future__ import annotations

import numpy as np
import scipy.sparse

from zeroskip.core.errors import CompileError
from zeroskip.core.isa import NmWord
from zeroskip.firmware.formats.base import (
    DescriptorFault,
    LaneImage,
    by_row,
    pack_entries,
    read_words,
    row_stream,
    row_tokens,
    unpack_entries,
    word_at,
)
from zeroskip.firmware.formats.registry import FormatCodec, register

__all__ = ["Nm", "check_nm_fits", "nm_descriptor", "nm_of_descriptor", "parse_nm", "nm_violation",
           "prune_nm"]


def nm_descriptor(n, m):
    """The ``ptr[ptr_base + 2]`` word of an N:M tile (:class:`~zeroskip.core.isa.NmWord`)."""
    return NmWord.const({"n": n, "log2_m": m.bit_length() - 1}).as_bits()


def nm_of_descriptor(word):
    """``(N, M)`` of an N:M descriptor word (the bits above :class:`~zeroskip.core.isa.NmWord`
    are ignored)."""
    layout = NmWord.as_shape()
    n, log2_m = (word >> field.offset & ((1 << field.width) - 1)
                 for field in (layout["n"], layout["log2_m"]))
    return n, 1 << log2_m


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



def _slot_columns(key, cols, n, groups, big_n, m, width):
    """Columns (inside their group) of every slot: the entries' own, and for the
    padding slots columns of their group inside the tile, unused ones first."""
    rank = np.arange(len(key)) - np.searchsorted(key, key, side="left")
    if len(rank) and rank.max() >= big_n:
        raise ValueError("a group holds more than N entries")
    slot_cols = np.zeros((n * groups, big_n), dtype=np.int64)
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
    return slot_cols, rank


def check_nm_fits(nm, config):
    """Raise :class:`CompileError` if ``nm = (N, M)`` does not fit ``config`` (the x
    buffer, the pointer word)."""
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


@register
class Nm(FormatCodec):
    name = "nm"

    def refusal(self, matrix, config, *, nm):
        violation = nm_violation(matrix, *nm)
        if violation is not None:
            row, column, held = violation
            return (f"matrix is not {nm[0]}:{nm[1]} structured: row {row}, columns "
                    f"{column}-{column + nm[1] - 1} hold {held} nonzeros (use --prune-nm)")
        try:
            check_nm_fits(nm, config)
        except CompileError as error:
            return str(error)
        return None

    def encode(self, lengths, cols, values, config, *, width, nm):
        if nm is None:
            raise ValueError("the NM format needs nm=(N, M)")
        n = len(lengths)
        rows, cols, values = by_row(lengths, cols, values)
        big_n, m = nm
        groups = -(-width // m)
        # Entries are sorted by (row, col): a (row, group) key is non-decreasing.
        key = rows * groups + cols // m
        slot_cols, rank = _slot_columns(key, cols, n, groups, big_n, m, width)
        slot_values = np.zeros((n * groups, big_n), dtype=np.int64)
        slot_values[key, rank] = values
        ptr = np.array([n, groups, nm_descriptor(big_n, m)], dtype=np.uint32)
        nz = pack_entries(slot_cols.reshape(-1), slot_values.reshape(-1), config)
        assert len(nz) == n * groups * big_n
        return LaneImage(ptr, nz, np.zeros(0, dtype=np.uint32))

    def decode(self, ptr, nz, meta, n, *, ptr_base, nz_base, config):
        groups = word_at(ptr, ptr_base + 1)
        big_n, m = nm_of_descriptor(word_at(ptr, ptr_base + 2))
        slots = groups * big_n
        total = n * slots
        if nz_base + total > config.nz_depth:
            raise DescriptorFault("slots")
        fields, values = unpack_entries(read_words(nz, nz_base, total), config)
        index = np.arange(total)
        rows = index // slots if slots else index
        cols = ((index % slots) // big_n) * m + fields if slots else index
        return row_stream(self.fmt, n, rows, cols, values,
                          row_tokens(np.full(n, slots, dtype=np.int64), 1))

    def tile_width(self, width, config, nm):
        tile_width = width
        while tile_width > nm[1] and tile_width * nm[0] // nm[1] > config.nz_depth:
            tile_width //= 2
        return tile_width

    def lane_terms(self, widths, counts, config, epi, nm):
        n, m = nm
        spans = -(-widths // m) * m
        slots = (-(-widths // m)) * n
        memory = np.tile(slots, (counts.shape[0], 1))
        work = np.full(counts.shape[0], int(np.maximum(slots, 1).sum()), dtype=np.int64)
        return spans, memory, work
