"""Which storage formats a generated accelerator decodes, and what that implies.

The configuration names the formats (``AcceleratorConfig.formats``, lower-case
names); the hardware works with :class:`~zeroskip.core.isa.Format` members. Both
come from the format registry, :mod:`zeroskip.core.formatspec`. Only the enabled
formats are generated: every block asks :func:`enabled_formats` and leaves the
logic of the others out.
"""

from zeroskip.core import formatspec
from zeroskip.core.isa import Format

__all__ = ["enabled_formats", "row_formats", "column_mode", "uses_meta"]


def _enabled_specs(config):
    return formatspec.specs_of(config.formats)


def enabled_formats(config):
    """The :class:`Format` members ``config`` generates hardware for (a frozenset)."""
    return frozenset(Format[spec.member] for spec in _enabled_specs(config))


def row_formats(config):
    """The enabled formats the row-mode format decoder walks (all but column mode)."""
    return frozenset(Format[spec.member] for spec in _enabled_specs(config)
                     if not spec.column_mode)


def column_mode(config):
    """Whether column mode (a format of dataflow ``column``: CSC) is generated."""
    return any(spec.column_mode for spec in _enabled_specs(config))


def uses_meta(config):
    """Whether any enabled format reads the per-lane ``meta`` memory."""
    return any(spec.uses_meta for spec in _enabled_specs(config))
