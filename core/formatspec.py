r"""The storage formats of a tile, each specified once: the format registry.

Every format a lane's tile can be stored in is one :class:`FormatSpec` in
:data:`SPECS`: its name (as the configuration, the API and the CLI spell it),
its ``SPMV.fmt`` code, the words of its descriptor, whether it uses the
``meta`` memory, its dataflow and its memory layout. Everything else that
lists formats derives the list from here:

- :class:`zeroskip.core.isa.Format`, the enum of ``SPMV.fmt``, has one member per
  spec (``spec.member``, the upper-case name) with value ``spec.code``;
- :class:`zeroskip.core.config.AcceleratorConfig` accepts :data:`NAMES`;
- ``zeroskip.hdl.formats`` tells the blocks which logic to generate;
- ``zeroskip.firmware.formats`` holds one module per format, named after it,
  with its encoder, its decoder (what the hardware streams) and the cost
  terms the compiler plans with; it imports the module of every spec here.

This module sits at the bottom of the layers (beside the configuration it
serves): it imports nothing but :mod:`zeroskip.core.errors`.

Every format's descriptor starts with ``ptr[ptr_base] = n`` (the lane's rows);
``meta`` is a second per-lane memory of 16-bit words indexed like ``nz``. The
layout of each format is its spec's :attr:`FormatSpec.layout`.
"""

from __future__ import annotations

import dataclasses

from zeroskip.core.errors import CompileError, ConfigError

__all__ = ["FormatSpec", "SPECS", "CSR", "COO", "BITMAP", "NM", "DENSE", "CSC", "NAMES", "ROW",
           "DENSE_FLOW", "COLUMN", "DATAFLOWS", "NM_WORD_BITS", "DEFAULT_FORMATS", "UnknownFormat",
           "get", "by_code", "specs_of"]

#: Dataflow of the row formats: rows stream through the gather network.
ROW = "row"
#: Dataflow of dense mode: every entry streams, zeros included.
DENSE_FLOW = "dense"
#: Column mode (activation zero-skipping): only columns with a nonzero ``x`` are visited.
COLUMN = "column"
#: The dataflows a format may run.
DATAFLOWS = (ROW, DENSE_FLOW, COLUMN)

#: Bits of the N:M descriptor word (:class:`zeroskip.core.isa.NmWord`, which asserts it).
NM_WORD_BITS = 12


class UnknownFormat(ConfigError, CompileError):
    """A format name (or code) that no :class:`FormatSpec` has: a bad configuration
    and a bad compiler request alike."""


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """One storage format.

    Attributes
    ----------
    name : str
        Lower-case name, as the configuration, the API and the CLI spell it.
    code : int
        Value of ``SPMV.fmt`` (3 bits).
    header_words : int
        Fixed words of the descriptor from ``ptr[ptr_base]`` on (the row
        count included); CSR adds one row end per row.
    uses_meta : bool
        Whether the lane images use the ``meta`` memory.
    dataflow : str
        :data:`ROW`, :data:`DENSE_FLOW` or :data:`COLUMN`.
    preference : int
        On equal predicted cycles the compiler takes the format of the lower
        preference (fewer memory words).
    ptr_word_bits : int
        Bits a ``ptr`` word must hold for the descriptor (0: no more than the
        row and nonzero addresses).
    layout : str
        The memory layout (the ISA's definition of the format).
    """

    name: str
    code: int
    header_words: int
    uses_meta: bool
    dataflow: str
    preference: int
    ptr_word_bits: int = 0
    layout: str = ""

    def __post_init__(self):
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}, "
                             f"not {self.dataflow!r}")
        if not 0 <= self.code < 8:
            raise ValueError(f"code must fit SPMV.fmt's 3 bits, not {self.code}")

    @property
    def member(self):
        """The name of the :class:`zeroskip.core.isa.Format` member."""
        return self.name.upper()

    @property
    def column_mode(self):
        return self.dataflow == COLUMN


# One spec per format; code that needs a particular format names it by its spec
# (``formatspec.NM.name``), never by a string.
CSR = FormatSpec(
    "csr", 0, header_words=1, uses_meta=False, dataflow=ROW, preference=0,
    layout="ptr[ptr_base + 1 + i] ends row i (exclusive, relative to nz_base); row i starts "
           "where row i - 1 ended; nz[nz_base + k] holds (column, value).")
COO = FormatSpec(
    "coo", 1, header_words=2, uses_meta=True, dataflow=ROW, preference=1,
    layout="ptr[ptr_base + 1] = e entries; entry k is nz[nz_base + k] (column, value) in row "
           "meta[nz_base + k]; rows are non-decreasing, a row without entries yields 0 like "
           "an empty CSR row.")
BITMAP = FormatSpec(
    "bitmap", 2, header_words=2, uses_meta=True, dataflow=ROW, preference=3,
    layout="ptr[ptr_base + 1] = C chunks of 16 columns per row; chunk c of row i is "
           "meta[nz_base + i * C + c] (bit t is column 16 * c + t); the values of the set "
           "bits follow one another, row by row, in nz[nz_base + k] (value field).")
NM = FormatSpec(
    "nm", 3, header_words=3, uses_meta=False, dataflow=ROW, preference=2,
    ptr_word_bits=NM_WORD_BITS,
    layout="ptr[ptr_base + 1] = G groups per row and ptr[ptr_base + 2] = N | log2(M) << 8 "
           "(NmWord; the bits of the pointer word above it are ignored); row i holds G * N "
           "slots, slot s at nz[nz_base + i * G * N + s] with column (s // N) * M + col; a "
           "slot of value 0 is padding (a skipped product).")
DENSE = FormatSpec(
    "dense", 4, header_words=2, uses_meta=False, dataflow=DENSE_FLOW, preference=5,
    layout="ptr[ptr_base + 1] = L columns; nz[nz_base + i * L + j] holds the value of "
           "column j (value field).")
CSC = FormatSpec(
    "csc", 5, header_words=2, uses_meta=True, dataflow=COLUMN, preference=4,
    layout="column mode: ptr[ptr_base + 1] = c columns and ptr[ptr_base + 2 + j] ends column "
           "j; entry k is the value nz[nz_base + k] in row meta[nz_base + k]. Only columns "
           "with x[x_base + j] != 0 are visited; a row sums its products in column order.")

#: Every format, in the order of its code.
SPECS = (CSR, COO, BITMAP, NM, DENSE, CSC)

#: The formats a configuration enables unless it names others.
DEFAULT_FORMATS = (CSR.name,)
#: The format names, in the order of their codes.
NAMES = tuple(spec.name for spec in SPECS)
_BY_NAME = {spec.name: spec for spec in SPECS}
_BY_CODE = {spec.code: spec for spec in SPECS}
assert len(_BY_NAME) == len(_BY_CODE) == len(SPECS), "format names and codes must be unique"


def get(name):
    """The :class:`FormatSpec` called ``name`` (case-insensitive).

    Raises
    ------
    UnknownFormat
        ``unknown format 'ell'; known: csr, coo, bitmap, nm, dense, csc``.
    """
    try:
        return _BY_NAME[str(name).lower()]
    except KeyError:
        raise UnknownFormat(f"unknown format {name!r}; known: {', '.join(NAMES)}") from None


def by_code(code):
    """The :class:`FormatSpec` of ``SPMV.fmt`` value ``code`` (an int or a ``Format``)."""
    code = int(getattr(code, "value", code))
    try:
        return _BY_CODE[code]
    except KeyError:
        raise UnknownFormat(f"unknown format code {code}; known: "
                            f"{', '.join(f'{s.code} ({s.name})' for s in SPECS)}") from None


def specs_of(names):
    """The specs of ``names`` (a configuration's ``formats``), in code order."""
    wanted = {get(name).name for name in names}
    return tuple(spec for spec in SPECS if spec.name in wanted)
