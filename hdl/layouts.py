"""Payload layouts of the streams between the accelerator's blocks.

Each function takes the :class:`~zeroskip.core.config.AcceleratorConfig` and
returns a ``data.StructLayout``; blocks never spell out these fields twice.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

__all__ = ["token_layout", "gather_request_layout", "gather_response_layout",
           "pe_input_layout", "pe_result_layout", "operand_tag_layout"]


def token_layout(config):
    """A nonzero (or an empty row) leaving the format decoder.

    ``addr`` is the input-vector address (``x_base + col``), ``value`` the
    stored matrix value, ``row`` the lane-local row, ``last`` marks the row's
    final token and ``empty`` a row without nonzeros (``last`` is set too).
    """
    return data.StructLayout({
        "addr": unsigned(config.col_width),
        "value": signed(config.value_width),
        "row": unsigned(config.row_addr_width),
        "last": unsigned(1),
        "empty": unsigned(1),
    })


def operand_tag_layout(config):
    """What travels with a gather request and comes back with its data."""
    return data.StructLayout({
        "value": signed(config.value_width),
        "row": unsigned(config.row_addr_width),
        "last": unsigned(1),
        "empty": unsigned(1),
    })


def gather_request_layout(config, tag_shape):
    """A lane's read of ``x[addr]``; ``skip`` passes the tag without a read."""
    return data.StructLayout({
        "addr": unsigned(config.col_width),
        "skip": unsigned(1),
        "tag": tag_shape,
    })


def gather_response_layout(config, tag_shape):
    """``x[addr]`` (zero for a skipped request) with the request's tag."""
    return data.StructLayout({
        "data": signed(config.value_width),
        "tag": tag_shape,
    })


def pe_input_layout(config):
    """One product for a PE: matrix value ``a`` and operand ``x``."""
    return data.StructLayout({
        "a": signed(config.value_width),
        "x": signed(config.value_width),
        "row": unsigned(config.row_addr_width),
        "last": unsigned(1),
        "empty": unsigned(1),
    })


def pe_result_layout(config):
    """A finished row sum; ``overflow`` if a partial sum left the accumulator."""
    return data.StructLayout({
        "row": unsigned(config.row_addr_width),
        "sum": signed(config.acc_width),
        "overflow": unsigned(1),
    })
