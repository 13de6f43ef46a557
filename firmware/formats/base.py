"""What every format's lane images share: packed nonzero words, the image and
stream records, the descriptor fault and the token helpers of the timing
contract."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from zeroskip.core.arith import sign_extend
from zeroskip.core.isa import Format, nz_entry_layout

__all__ = ["LaneImage", "LaneStream", "DescriptorFault", "pack_entries", "unpack_entries",
           "starts", "read_words", "word_at", "row_tokens", "row_stream", "by_row"]


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


def starts(lengths):
    """Start of each run of ``lengths`` (exclusive prefix sums, int64)."""
    return np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64) if len(lengths) \
        else np.zeros(0, dtype=np.int64)


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


def read_words(memory, start, count):
    """``memory[start:start + count]`` as int64, zeros past the end of an image."""
    part = np.asarray(memory[start:start + count], dtype=np.int64)
    if len(part) < count:
        part = np.concatenate((part, np.zeros(count - len(part), dtype=np.int64)))
    return part


def word_at(memory, index):
    """``memory[index]`` as an int, 0 past the end of an image."""
    return int(memory[index]) if index < len(memory) else 0


def row_tokens(lengths, minimum):
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
            entries = np.insert(entries, starts(lengths)[empty], -1)
        return entries
    per_row = np.maximum(lengths, minimum)
    total = int(per_row.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    token_start = np.repeat(starts(per_row), per_row)
    offset = np.arange(total) - token_start
    row_len = np.repeat(lengths, per_row)
    entry = np.repeat(starts(lengths), per_row) + offset
    return np.where(offset < row_len, entry, -1)


def row_stream(fmt, n, rows, cols, values, tokens):
    """The :class:`LaneStream` of a row format (arrays as int64)."""
    return LaneStream(fmt, n, np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                      np.asarray(values, dtype=np.int64), tokens)


def by_row(lengths, cols, values):
    """Entry rows from ``lengths``, then rows, columns and values sorted by (row, column)."""
    rows = np.repeat(np.arange(len(lengths)), lengths)
    order = np.lexsort((cols, rows))
    return rows[order], cols[order], values[order]
