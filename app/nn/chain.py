"""A whole network as one program: its layers chained on chip with ``MOVE``.

:func:`chain_network` links a :class:`~zeroskip.app.nn.compile.CompiledNetwork`
into one program for a batch of ``compiled.batch`` inputs
(:func:`zeroskip.firmware.compiler.link.link`): layer 1's ``SPMV`` for every
input of the batch, a ``MOVE`` of its outputs into X, layer 2's ``SPMV``, ...,
``HALT``. Every shift group of a layer is compiled again for one input (a
vector, every activation assumed nonzero; long rows are not split, so that
every lane can be padded): layer ``k + 1``'s columns are permuted to the
lane-major order in which the ``MOVE`` after layer ``k`` leaves its outputs
(:meth:`~zeroskip.firmware.compiler.link.Layout.x_columns`). A column whose
row layer ``k`` never computes (its result is always 0) keeps no entry. The
host writes the batch's inputs, starts the program once, polls it and reads
the last layer's outputs: no activation crosses the host link.

A network whose layers do not all fit on chip at once raises
:class:`~zeroskip.core.errors.CompileError` with one line naming the limit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

from zeroskip.app.nn.compile import compile_group
from zeroskip.core.errors import CompileError
from zeroskip.firmware.compiler.link import Part, check_move_fits, layout, link, steps

__all__ = ["ChainedNetwork", "chain_network", "permute_columns"]

#: What a network that does not fit on chip is told first.
DOES_NOT_FIT = "the network does not fit on chip as one program"


@dataclasses.dataclass
class ChainedNetwork:
    """The one program of a chained network and the layouts of its layers."""
    program: object
    layouts: list
    batch: int


def permute_columns(weight, columns, width):
    """``weight`` with column ``c`` moved to ``columns[c]`` (dropped where -1), ``width`` wide."""
    coo = scipy.sparse.csr_matrix(weight).tocoo()
    target = np.asarray(columns, dtype=np.int64)[coo.col]
    keep = target >= 0
    return scipy.sparse.csr_matrix((coo.data[keep], (coo.row[keep], target[keep])),
                                   shape=(coo.shape[0], width), dtype=np.int64)


def chain_network(compiled, *, fmt="auto"):
    """Link ``compiled`` into one program per batch (see the module documentation).

    Returns
    -------
    ChainedNetwork

    Raises
    ------
    CompileError
        ``the network does not fit on chip as one program: ...`` and the limit.
    """
    config, batch = compiled.config, compiled.batch
    stages, rows, columns, width = [], [], None, None
    try:
        for index, layer in enumerate(compiled.quantized.layers):
            weight = scipy.sparse.csr_matrix(layer.weight).astype(np.int64)
            if columns is not None:
                weight = permute_columns(weight, columns, width)
            parts = [Part(compile_group(layer, shift, group, config, weight=weight[group],
                                        x=None, fmt=fmt, split_rows=False), group)
                     for shift, group in layer.groups()]
            stages.append(parts)
            rows.append(layer.shape[0])
            placed = layout(parts, layer.shape[0], 0)
            columns = placed.x_columns(steps(batch, config))
            width = config.pes * placed.count(steps(batch, config))
            if index < len(compiled.quantized.layers) - 1:
                check_move_fits(placed, batch, config, index + 1)
        program, layouts = link(stages, rows, batch, config, name="chained network")
    except CompileError as error:
        raise CompileError(f"{DOES_NOT_FIT}: {error}") from None
    return ChainedNetwork(program=program, layouts=layouts, batch=batch)
