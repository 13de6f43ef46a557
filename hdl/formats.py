"""Which storage formats a generated accelerator decodes, and what that implies.

The configuration names the formats (``AcceleratorConfig.formats``, lower-case
names); the hardware works with :class:`~zeroskip.firmware.isa.Format`
members. Only the enabled formats are generated: every block asks
:func:`enabled_formats` and leaves the logic of the others out.
"""

from ..firmware.isa import Format

__all__ = ["FORMAT_OF_NAME", "NM_SHIFT_OFFSET", "NM_WORD_BITS", "enabled_formats",
           "row_formats", "column_mode", "uses_meta", "ptr_word_width"]

#: ``AcceleratorConfig.formats`` spelling of every :class:`Format`.
FORMAT_OF_NAME = {"csr": Format.CSR, "coo": Format.COO, "bitmap": Format.BITMAP,
                  "nm": Format.NM, "dense": Format.DENSE, "csc": Format.CSC}

#: Bit offset of ``log2(M)`` in the N:M descriptor word ``N | log2(M) << 8``.
NM_SHIFT_OFFSET = 8
#: Bits a row-pointer word needs to hold an N:M descriptor word (``N`` up to
#: 255, ``log2(M)`` up to 15).
NM_WORD_BITS = NM_SHIFT_OFFSET + 4


def enabled_formats(config):
    """The :class:`Format` members ``config`` generates hardware for (a frozenset)."""
    return frozenset(FORMAT_OF_NAME[name] for name in config.formats)


def row_formats(config):
    """The enabled formats the row-mode format decoder walks (all but CSC)."""
    return enabled_formats(config) - {Format.CSC}


def column_mode(config):
    """Whether column mode (``Format.CSC``) is generated."""
    return Format.CSC in enabled_formats(config)


def uses_meta(config):
    """Whether any enabled format reads the per-lane ``meta`` memory."""
    return bool(enabled_formats(config) & {Format.COO, Format.BITMAP, Format.CSC})


def ptr_word_width(config):
    """Bits of a word of a lane's row-pointer memory.

    ``config.ptr_width`` holds a row count or a row end; the N:M descriptor
    word ``N | log2(M) << 8`` needs :data:`NM_WORD_BITS`, so a configuration
    with ``nm`` stores at least that many. The host writes the low bits of its
    32-bit word; the ISA model must mask ``PTR`` writes to the same width.
    """
    if Format.NM in enabled_formats(config):
        return max(config.ptr_width, NM_WORD_BITS)
    return config.ptr_width
