"""Dense mode counted right: every row, column and tile, checked against the
products bound and against the ISA model running the layer in dense mode."""

import importlib.util
from pathlib import Path

import pytest

from zeroskip.app.nn.compile import compile_network, dense_mode_cycles, run_network
from zeroskip.app.nn.infer import network_config
from zeroskip.app.nn.quantize import quantize_network
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InternalError
from zeroskip.firmware.cycles import check_dense_cycles, dense_floor

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)

CONFIG = AcceleratorConfig(pes=4, x_depth=256, nz_depth=512, row_depth=64, imem_depth=16,
                           formats=("csr", "coo", "bitmap", "nm", "dense", "csc"))


def test_the_bound_is_products_over_the_array_rate():
    config = network_config()
    assert config.macs_per_cycle == config.pes == 8
    assert dense_floor(1024, 1024, 1, config) == 131072
    assert dense_floor(10, 64, 3, config) == 240
    assert dense_floor(3, 3, 1, config) == 2      # rounded up
    assert check_dense_cycles(131072, 1024, 1024, 1, config) == 131072
    with pytest.raises(InternalError, match=r"^layer: 1045 cycles for 1 input\(s\) through "
                                            r"1024 x 1024 is below the bound of 131072 "
                                            r"\(1024 x 1024 x 1 products at 8 per cycle\)$"):
        check_dense_cycles(1045, 1024, 1024, 1, config, what="layer")


@pytest.mark.parametrize("rows", [1, 64, 1024])
def test_dense_mode_grows_with_the_rows(rows):
    config = network_config(value_width=16)
    cycles = dense_mode_cycles(rows, 1024, config)
    assert cycles >= dense_floor(rows, 1024, 1, config)
    if rows == 1024:
        assert cycles >= 131072
    # A batch of 16 costs at least 16 inputs' products.
    assert dense_mode_cycles(rows, 1024, config, batch=16) >= 16 * rows * 1024 // 8


def test_digits_shape_meets_the_bound_at_8_pes():
    """64-64-10 at 8 PEs: at least (64 * 64 + 10 * 64) / 8 = 592 cycles per input."""
    config = network_config()
    per_input = sum(dense_mode_cycles(r, c, config, batch=16, bias=True, shift=4, relu=True)
                    for r, c in ((64, 64), (10, 64))) / 16
    assert per_input >= 592


@pytest.mark.parametrize("images,batch", [(7, 4), (3, 1)])
def test_predicted_dense_cycles_equal_the_model_running_dense_mode(images, batch):
    """A dense network compiled with fmt="dense" and run on the ISA model takes
    exactly the cycles its dense-mode prediction says, layer by layer."""
    net = nn_helpers.tiny_network(3, density=1.0)
    x = nn_helpers.sparse_inputs(images, net.inputs, 4)
    q = quantize_network(net, x, value_width=CONFIG.value_width)
    x_int = q.quantize_inputs(x)
    compiled = compile_network(q, CONFIG, x_int, batch=batch, fmt="dense")
    assert all(layer.formats() == ["dense"] for layer in compiled.layers)
    run = run_network(compiled, x_int, skip_empty=False)
    for layer, counters, inputs in zip(compiled.layers, run.counters, run.padded_per_layer):
        assert layer.predicted_dense_cycles(inputs) == counters["cycles"]
        assert counters["cycles"] >= dense_floor(*layer.shape, inputs, CONFIG)


def test_sparse_layer_dense_mode_is_the_dense_layers():
    """A pruned layer forced into dense mode costs what the dense layer does."""
    dense = nn_helpers.tiny_network(3, density=1.0)
    sparse = nn_helpers.tiny_network(3, density=0.1)
    x = nn_helpers.sparse_inputs(8, dense.inputs, 4)
    figures = []
    for net in (dense, sparse):
        q = quantize_network(net, x, value_width=CONFIG.value_width, weight_frac_bits=6)
        compiled = compile_network(q, CONFIG, q.quantize_inputs(x), batch=4)
        figures.append([layer.predicted_dense_cycles(8) for layer in compiled.layers])
    assert figures[0] == figures[1]
