"""Which storage formats a generated accelerator decodes, and what that implies.

The configuration names the formats (``AcceleratorConfig.formats``, lower-case
names); the hardware works with :class:`~zeroskip.isa.Format`
members. Only the enabled formats are generated: every block asks
:func:`enabled_formats` and leaves the logic of the others out.
"""

from zeroskip.isa import Format

__all__ = ["FORMAT_OF_NAME", "enabled_formats",
           "row_formats", "column_mode", "uses_meta"]

#: ``AcceleratorConfig.formats`` spelling of every :class:`Format`.
FORMAT_OF_NAME = {"csr": Format.CSR, "coo": Format.COO, "bitmap": Format.BITMAP,
                  "nm": Format.NM, "dense": Format.DENSE, "csc": Format.CSC}


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
