"""A layer's lane balance: its shift groups' programs' lane work summed."""

import numpy as np

from zeroskip.app.nn.compile import CompiledLayer
from zeroskip.core.config import AcceleratorConfig
from zeroskip.firmware.compiler import compile_kernel

TWO_LANES = AcceleratorConfig(pes=2, formats=("csr",))


def _program(a):
    return compile_kernel(np.array(a), TWO_LANES, split_rows=False)


def test_layer_sums_its_groups():
    uneven = _program([[1, 2, 3, 0], [0, 0, 0, 4]])      # lanes 3 and 1
    even = _program([[0, 5, 0, 0], [0, 0, 6, 0]])        # lanes 1 and 1
    layer = CompiledLayer(name="fc", shape=(4, 4), nnz=6,
                          groups=[(np.array([0, 1]), uneven), (np.array([2, 3]), even)])
    balance = layer.lane_balance()
    assert balance["lane_work"] == [4, 2]
    assert balance["balance"] == 4 / 3
    assert [(t["group"], t["tile"], t["lane_work"], t["balance"]) for t in balance["tiles"]] \
        == [(0, 0, [3, 1], 1.5), (1, 0, [1, 1], 1.0)]


def test_a_layer_without_programs_is_even():
    layer = CompiledLayer(name="empty", shape=(2, 2), nnz=0, groups=[])
    assert layer.lane_balance() == {"lane_work": [], "balance": 1.0, "tiles": []}
