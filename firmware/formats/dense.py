"""DENSE (dense mode): every value of the tile's columns in ``nz``, zeros included
(see :data:`zeroskip.core.formatspec.SPECS`)."""

from __future__ import annotations

import numpy as np

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

__all__ = ["Dense", "dense_span"]


def dense_span(width, config):
    """DENSE tiles stream a multiple of ``x_banks`` columns when the x buffer allows:
    then the lanes, one column apart, never request one bank together."""
    banks = config.x_banks
    padded = -(-width // banks) * banks
    return padded if padded <= min(config.x_depth, config.nz_depth) else width


@register
class Dense(FormatCodec):
    name = "dense"
    every_tile = True

    def encode(self, lengths, cols, values, config, *, width, nm):
        n = len(lengths)
        rows, cols, values = by_row(lengths, cols, values)
        dense = np.zeros((n, width), dtype=np.int64)
        dense[rows, cols] = values
        ptr = np.array([n, width], dtype=np.uint32)
        return LaneImage(ptr, pack_entries(np.zeros(n * width, dtype=np.int64),
                                           dense.reshape(-1), config),
                         np.zeros(0, dtype=np.uint32))

    def decode(self, ptr, nz, meta, n, *, ptr_base, nz_base, config):
        width = word_at(ptr, ptr_base + 1)
        total = n * width
        if nz_base + total > config.nz_depth:
            raise DescriptorFault("entries")
        _, values = unpack_entries(read_words(nz, nz_base, total), config)
        index = np.arange(total)
        rows = index // width if width else index
        cols = index % width if width else index
        return row_stream(self.fmt, n, rows, cols, values,
                          row_tokens(np.full(n, width, dtype=np.int64), 1))

    def tile_width(self, width, config, nm):
        return min(width, config.nz_depth)

    def lane_terms(self, widths, counts, config, epi, nm):
        spans = np.array([dense_span(w, config) for w in widths], dtype=np.int64)
        memory = np.tile(spans, (counts.shape[0], 1))
        work = np.full(counts.shape[0], int(spans.sum()), dtype=np.int64)
        return spans, memory, work
