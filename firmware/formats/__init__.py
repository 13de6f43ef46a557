"""Storage formats of a lane's tile: encoders, decoders and matrix converters.

Every ``SPMV`` reads one lane's tile in the format its ``fmt`` field names
(:class:`~zeroskip.core.isa.Format`; the formats and their layouts are specified in
:mod:`zeroskip.core.formatspec`). Each format has one module here, named after it
(``csr``, ``coo``, ...), that registers its :class:`~.registry.FormatCodec`:
its encoder, its decoder and the compiler's cost terms. This package imports
the module of every spec, so a spec without a codec fails at import. It
offers, for every format:

- :func:`encode_lane`: a lane's rows (a small CSR sub-matrix, columns relative
  to the tile) to its ``ptr``/``nz``/``meta`` memory images;
- :func:`decode_lane`: what the format decoder streams from those memories for
  one instruction: the entries in stream order and the token sequence of the
  timing contract (``docs/internals.md``), with the descriptor checks that
  stop the hardware with ``DESCRIPTOR``. The ISA model executes it and the
  programs' cycle prediction replays it;
- :func:`lane_matrix`: the inverse of :func:`encode_lane` (a decoded image back
  to a sparse matrix), so every format round-trips;
- :func:`nm_violation` and :func:`prune_nm`: the N:M structure check (with the
  exact offending group) and magnitude pruning to N:M.
"""

from __future__ import annotations

import importlib

import numpy as np
import scipy.sparse

from zeroskip.core import formatspec
from zeroskip.core.isa import BITMAP_CHUNK, META_WIDTH, Format
from zeroskip.firmware.formats.base import (
    DescriptorFault,
    LaneImage,
    LaneStream,
    pack_entries,
    unpack_entries,
    word_at,
)
from zeroskip.firmware.formats.registry import PLAN_ROWS, PLAN_TILES, FormatCodec, codecs, get

for _spec in formatspec.SPECS:
    importlib.import_module(f"{__name__}.{_spec.name}")
    get(_spec.name)  # the module registered the codec

from zeroskip.firmware.formats.bitmap import bitmap_row_cycles  # noqa: E402
from zeroskip.firmware.formats.csr import CsrLanes, decode_csr_lanes  # noqa: E402
from zeroskip.firmware.formats.dense import dense_span  # noqa: E402
from zeroskip.firmware.formats.nm import (  # noqa: E402
    nm_descriptor,
    nm_of_descriptor,
    nm_violation,
    parse_nm,
    prune_nm,
)

__all__ = [
    "FORMAT_NAMES", "DATAFLOWS", "format_by_name", "format_name", "dataflow_of", "get",
    "codecs", "FormatCodec", "PLAN_ROWS", "PLAN_TILES", "LaneImage", "LaneStream",
    "DescriptorFault", "encode_lane", "decode_lane", "lane_matrix", "pack_entries",
    "unpack_entries", "nm_violation", "prune_nm", "nm_descriptor", "nm_of_descriptor",
    "bitmap_row_cycles", "parse_nm",
    "CsrLanes", "decode_csr_lanes", "dense_span", "BITMAP_CHUNK", "META_WIDTH",
]

#: Lower-case names of the formats, as the configuration and the CLI spell them.
FORMAT_NAMES = {codec.fmt: codec.spec.name for codec in codecs()}
#: The dataflow each format runs (:data:`zeroskip.core.formatspec.DATAFLOWS`).
DATAFLOWS = {codec.fmt: codec.spec.dataflow for codec in codecs()}


def format_by_name(name):
    """The :class:`~zeroskip.core.isa.Format` called ``name`` (case-insensitive).

    Raises
    ------
    zeroskip.core.formatspec.UnknownFormat
        A :class:`~zeroskip.core.errors.CompileError` naming the known formats.
    """
    return get(str(name)).fmt


def format_name(fmt):
    return get(Format(fmt)).spec.name


def dataflow_of(fmt):
    return get(Format(fmt)).spec.dataflow


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
        ``(N, M)`` for :attr:`~zeroskip.core.isa.Format.NM`; every aligned group of
        ``M`` columns of a row must hold at most ``N`` entries.

    Returns
    -------
    LaneImage
    """
    return get(Format(fmt)).encode(np.asarray(lengths, dtype=np.int64),
                                   np.asarray(cols, dtype=np.int64),
                                   np.asarray(values, dtype=np.int64),
                                   config, width=width, nm=nm)


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
    codec = get(Format(fmt))
    n = word_at(ptr, ptr_base)
    if ptr_base + codec.descriptor_words(n) > config.row_depth:
        raise DescriptorFault("descriptor")
    stream = codec.decode(ptr, nz, meta, n, ptr_base=ptr_base, nz_base=nz_base, config=config)
    stream.check_bases(x_base, out_base, config)
    return stream


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


