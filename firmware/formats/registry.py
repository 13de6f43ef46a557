"""The firmware side of the format registry: one :class:`FormatCodec` per format.

Every module of :mod:`zeroskip.firmware.formats` named after a spec of
:data:`zeroskip.core.formatspec.SPECS` defines the format's codec (its encoder, its
decoder and the cost terms the compiler plans with) and registers it with
:func:`register`. :func:`get` finds it by name, by :class:`~zeroskip.core.isa.Format`
or by ``SPMV.fmt`` code and refuses a format it does not know.
"""

from __future__ import annotations

import numpy as np

from zeroskip.core import formatspec
from zeroskip.core.errors import CompileError
from zeroskip.core.isa import Format

__all__ = ["FormatCodec", "PLAN_ROWS", "PLAN_TILES", "register", "get", "codecs"]

#: The compiler plans the format's rows as CSR's: nonzero-balanced row blocks,
#: split rows when they pay (``_plan_csr``).
PLAN_ROWS = "rows"
#: The compiler plans the format by column tiles from the codec's cost terms
#: (:meth:`FormatCodec.tile_width`, :meth:`FormatCodec.lane_terms`).
PLAN_TILES = "tiles"


class FormatCodec:
    """One storage format's firmware. Subclasses set :attr:`name` and implement
    :meth:`encode` and :meth:`decode`; :func:`register` sets :attr:`spec` and
    :attr:`fmt`.
    """

    #: The name of the format's :class:`~zeroskip.core.formatspec.FormatSpec`.
    name: str = ""
    #: How the compiler plans the format: :data:`PLAN_ROWS` or :data:`PLAN_TILES`.
    planner: str = PLAN_TILES
    #: Whether every column tile of a block streams (dense mode: zeros too) or
    #: only those with entries.
    every_tile: bool = False
    spec: formatspec.FormatSpec
    fmt: Format

    def descriptor_words(self, n):
        """Words of the descriptor of a tile of ``n`` rows, from ``ptr[ptr_base]`` on."""
        return self.spec.header_words

    def encode(self, lengths, cols, values, config, *, width, nm):
        """A lane's rows to a :class:`~.base.LaneImage` (see :func:`.encode_lane`)."""
        raise NotImplementedError

    def decode(self, ptr, nz, meta, n, *, ptr_base, nz_base, config):
        """What the decoder streams, a :class:`~.base.LaneStream` (see :func:`.decode_lane`;
        the descriptor's length and the tile's bases are checked there)."""
        raise NotImplementedError

    def refusal(self, matrix, config, *, nm):
        """Why the format cannot hold ``matrix`` (CSR, int64) in ``config``, or None.

        ``fmt="auto"`` leaves the format out (and notes why); a request for it
        fails with this message.
        """
        return None

    # Cost terms of the compiler (PLAN_TILES formats).

    def tile_width(self, width, config, nm):
        """The column tile width the compiler takes for a band of ``width`` columns."""
        return width

    def lane_terms(self, widths, counts, config, epi, nm):
        """Cost terms of the rows of a band over column tiles of ``widths``.

        ``counts[i, t]`` are row ``i``'s entries in tile ``t``. Returns
        ``(spans, memory, work)``: the columns each tile's images cover, the
        nonzero-memory words of each row and tile and the cycles of each row.
        """
        raise CompileError(f"format {self.spec.name!r} is planned by rows, not by column tiles")


_CODECS: dict[str, FormatCodec] = {}


def register(cls):
    """Class decorator: register the codec ``cls`` for the spec called ``cls.name``."""
    spec = formatspec.get(cls.name)
    if spec.name in _CODECS:
        raise ValueError(f"format {spec.name!r} is registered twice")
    codec = cls()
    codec.spec, codec.fmt = spec, Format[spec.member]
    _CODECS[spec.name] = codec
    return cls


def get(format_):
    """The codec of ``format_``: a name (case-insensitive), a :class:`Format` or a code.

    Raises
    ------
    zeroskip.core.formatspec.UnknownFormat
        ``unknown format 'ell'; known: csr, coo, bitmap, nm, dense, csc``.
    """
    if isinstance(format_, str):
        spec = formatspec.get(format_)
    else:
        spec = formatspec.by_code(format_.value if isinstance(format_, Format)
                                  else int(np.int64(format_)))
    try:
        return _CODECS[spec.name]
    except KeyError:
        raise formatspec.UnknownFormat(
            f"format {spec.name!r} has no codec: zeroskip.firmware.formats.{spec.name} "
            f"must register one") from None


def codecs():
    """Every registered codec, in the order of the formats' codes."""
    return tuple(_CODECS[spec.name] for spec in formatspec.SPECS if spec.name in _CODECS)
