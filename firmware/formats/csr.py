"""CSR: row ends in ``ptr``, (column, value) entries in ``nz`` (see
:data:`zeroskip.core.formatspec.SPECS`). Also the model's all-lanes fast path,
:func:`decode_csr_lanes`."""

from __future__ import annotations

import dataclasses

import numpy as np

from zeroskip.firmware.formats.base import (
    DescriptorFault,
    LaneImage,
    pack_entries,
    read_words,
    row_stream,
    row_tokens,
    starts,
    unpack_entries,
)
from zeroskip.firmware.formats.registry import PLAN_ROWS, FormatCodec, register

__all__ = ["Csr", "CsrLanes", "decode_csr_lanes"]


@register
class Csr(FormatCodec):
    name = "csr"
    planner = PLAN_ROWS

    def descriptor_words(self, n):
        return self.spec.header_words + n

    def encode(self, lengths, cols, values, config, *, width, nm):
        n = len(lengths)
        ptr = np.concatenate(([n], np.cumsum(lengths))).astype(np.uint32)
        return LaneImage(ptr, pack_entries(cols, values, config), np.zeros(0, dtype=np.uint32))

    def decode(self, ptr, nz, meta, n, *, ptr_base, nz_base, config):
        ends = read_words(ptr, ptr_base + 1, n)
        if n and (np.any(np.diff(ends) < 0) or nz_base + int(ends[-1]) > config.nz_depth):
            raise DescriptorFault("row end")
        total = int(ends[-1]) if n else 0
        cols, values = unpack_entries(read_words(nz, nz_base, total), config)
        lengths = np.diff(ends, prepend=0)
        rows = np.repeat(np.arange(n), lengths)
        return row_stream(self.fmt, n, rows, cols, values, row_tokens(lengths, 1))


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
    row_local = np.arange(len(row_lane)) - np.repeat(starts(n), n)
    row_lengths = lengths[present]
    row_ends = np.cumsum(row_lengths)
    entry_lane = np.repeat(row_lane, row_lengths)
    offset = np.arange(len(entry_lane)) - np.repeat(starts(totals), totals)
    cols, values = unpack_entries(nz[entry_lane, nz_base + offset], c)
    if len(cols) and x_base + int(cols.max()) >= c.x_depth:
        raise DescriptorFault("x address")
    # Tokens: each entry's bank, and -1 where an empty row sits.
    per_row = np.maximum(row_lengths, 1)
    token_start = starts(per_row)
    banks = np.full(int(per_row.sum()), -1, dtype=np.int64)
    entry_row = np.repeat(np.arange(len(row_lengths)), row_lengths)
    banks[token_start[entry_row] + np.arange(len(cols)) - starts(row_lengths)[entry_row]] = \
        (x_base + cols) % c.x_banks
    lane_tokens = np.bincount(row_lane, weights=per_row, minlength=lanes).astype(np.int64)
    tokens = np.split(banks, np.cumsum(lane_tokens)[:-1])
    return CsrLanes(n, row_lane, row_local, row_ends, cols, values, tokens)


