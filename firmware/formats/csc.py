"""CSC (column mode, activation zero-skipping): column ends in ``ptr``, values in
``nz`` and their rows in ``meta`` (see :data:`zeroskip.core.formatspec.SPECS`)."""

from __future__ import annotations

import numpy as np

from zeroskip.core.isa import META_WIDTH
from zeroskip.firmware.formats.base import (
    DescriptorFault,
    LaneImage,
    LaneStream,
    pack_entries,
    read_words,
    unpack_entries,
    word_at,
)
from zeroskip.firmware.formats.registry import FormatCodec, register

__all__ = ["Csc"]


@register
class Csc(FormatCodec):
    name = "csc"

    def encode(self, lengths, cols, values, config, *, width, nm):
        n = len(lengths)
        rows = np.repeat(np.arange(n), lengths)
        # Columns in order, a column's entries by row.
        order = np.lexsort((rows, cols))
        rows, cols, values = rows[order], cols[order], values[order]
        ends = np.cumsum(np.bincount(cols, minlength=width)) if width else np.zeros(0, np.int64)
        ptr = np.concatenate(([n, width], ends)).astype(np.uint32)
        return LaneImage(ptr, pack_entries(np.zeros(len(values), dtype=np.int64), values,
                                           config), rows.astype(np.uint32))

    def decode(self, ptr, nz, meta, n, *, ptr_base, nz_base, config):
        columns = word_at(ptr, ptr_base + 1)
        if ptr_base + 2 + columns > config.row_depth:
            raise DescriptorFault("columns")
        ends = read_words(ptr, ptr_base + 2, columns)
        if columns and (np.any(np.diff(ends) < 0) or
                        nz_base + int(ends[-1]) > config.nz_depth):
            raise DescriptorFault("column end")
        total = int(ends[-1]) if columns else 0
        rows = read_words(meta, nz_base, total) & ((1 << META_WIDTH) - 1)
        if total and rows.max() >= n:
            raise DescriptorFault("row")
        _, values = unpack_entries(read_words(nz, nz_base, total), config)
        cols = np.repeat(np.arange(columns), np.diff(ends, prepend=0))
        return LaneStream(self.fmt, n, rows, cols, values, None, ends)

    def tile_width(self, width, config, nm):
        return min(width, config.row_depth - 2)

    def lane_terms(self, widths, counts, config, epi, nm):
        return widths, counts, 1 + counts.sum(axis=1) + int(epi.tail)
