"""BITMAP: 16-column chunks of set bits in ``meta``, the values of the set bits
in ``nz`` (see :data:`zeroskip.core.formatspec.SPECS`)."""

from __future__ import annotations

import numpy as np

from zeroskip.core.isa import BITMAP_CHUNK
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

__all__ = ["Bitmap", "bitmap_row_cycles"]


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


@register
class Bitmap(FormatCodec):
    name = "bitmap"

    def encode(self, lengths, cols, values, config, *, width, nm):
        n = len(lengths)
        rows, cols, values = by_row(lengths, cols, values)
        chunks = -(-width // BITMAP_CHUNK)
        words = np.zeros(n * chunks, dtype=np.int64)
        np.bitwise_or.at(words, rows * chunks + cols // BITMAP_CHUNK,
                         np.left_shift(1, cols % BITMAP_CHUNK))
        ptr = np.array([n, chunks], dtype=np.uint32)
        return LaneImage(ptr, pack_entries(np.zeros(len(values), dtype=np.int64), values,
                                           config), words.astype(np.uint32))

    def decode(self, ptr, nz, meta, n, *, ptr_base, nz_base, config):
        chunks = word_at(ptr, ptr_base + 1)
        if nz_base + n * chunks > config.nz_depth:
            raise DescriptorFault(self.name)
        words = read_words(meta, nz_base, n * chunks).reshape(n, chunks)
        bits = (words[:, :, None] >> np.arange(BITMAP_CHUNK)) & 1
        rows, cols = np.nonzero(bits.reshape(n, chunks * BITMAP_CHUNK))
        total = len(cols)
        if nz_base + total > config.nz_depth:
            raise DescriptorFault("entries")
        _, values = unpack_entries(read_words(nz, nz_base, total), config)
        if chunks:
            # Chunk by chunk: its set bits, or one token without a product.
            per_chunk = bits.reshape(n * chunks, BITMAP_CHUNK).sum(axis=1)
            tokens = row_tokens(per_chunk, 1)
        else:
            tokens = row_tokens(np.zeros(n, dtype=np.int64), 1)
        return row_stream(self.fmt, n, rows, cols, values, tokens)

    def lane_terms(self, widths, counts, config, epi, nm):
        chunks = -(-widths // BITMAP_CHUNK)
        memory = np.maximum(counts, chunks[None, :])
        return widths, memory, bitmap_row_cycles(counts, chunks[None, :]).sum(axis=1)
