"""COO: the entry count in ``ptr``, (column, value) entries in ``nz`` and their
rows in ``meta`` (see :data:`zeroskip.core.formatspec.SPECS`)."""

from __future__ import annotations

import numpy as np

from zeroskip.core.isa import META_WIDTH
from zeroskip.firmware.formats.base import (
    DescriptorFault,
    LaneImage,
    pack_entries,
    read_words,
    row_stream,
    row_tokens,
    unpack_entries,
    word_at,
)
from zeroskip.firmware.formats.registry import PLAN_ROWS, FormatCodec, register

__all__ = ["Coo"]


@register
class Coo(FormatCodec):
    name = "coo"
    planner = PLAN_ROWS

    def encode(self, lengths, cols, values, config, *, width, nm):
        n = len(lengths)
        rows = np.repeat(np.arange(n), lengths)
        ptr = np.array([n, len(cols)], dtype=np.uint32)
        return LaneImage(ptr, pack_entries(cols, values, config), rows.astype(np.uint32))

    def decode(self, ptr, nz, meta, n, *, ptr_base, nz_base, config):
        total = word_at(ptr, ptr_base + 1)
        if nz_base + total > config.nz_depth:
            raise DescriptorFault("entries")
        rows = read_words(meta, nz_base, total) & ((1 << META_WIDTH) - 1)
        if total and (rows.max() >= n or np.any(np.diff(rows) < 0)):
            raise DescriptorFault("row")
        cols, values = unpack_entries(read_words(nz, nz_base, total), config)
        tokens = row_tokens(np.bincount(rows, minlength=n) if n else rows, 1)
        return row_stream(self.fmt, n, rows, cols, values, tokens)
