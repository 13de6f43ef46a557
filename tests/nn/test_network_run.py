"""Whole-network compile and run: model bit-exact, column mode, RTL == model."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from zeroskip.app.nn.compile import compile_network, run_network
from zeroskip.app.nn.quantize import quantize_network
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InputError

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)

# The configuration of tests/system/test_formats_system.py: one simulator build serves both.
CONFIG = AcceleratorConfig(pes=4, x_depth=256, nz_depth=512, row_depth=64, imem_depth=16,
                           formats=("csr", "coo", "bitmap", "nm", "dense", "csc"))


def setup(images=8, batch=4, seed=0):
    net = nn_helpers.tiny_network(seed)
    x = nn_helpers.sparse_inputs(images, net.inputs, seed + 1)
    q = quantize_network(net, x, value_width=CONFIG.value_width)
    x_int = q.quantize_inputs(x)
    return net, q, x_int, compile_network(q, CONFIG, x_int, batch=batch)


def products(q, x_int):
    """Per layer, the products with both operands nonzero (what MACS counts)."""
    counts = []
    for index, layer in enumerate(q.layers):
        w = (layer.weight.toarray() != 0).astype(np.int64)
        counts.append(int(((x_int != 0).astype(np.int64) @ w.T).sum()))
        x_int = q.layer_reference(index, x_int)
    return counts


def test_model_is_bit_exact_and_counts_every_effectual_product():
    net, q, x_int, compiled = setup()
    run = run_network(compiled, x_int)
    for got, want in zip(run.outputs, q.reference(x_int)):
        np.testing.assert_array_equal(got, want)
    assert [c["macs"] for c in run.counters] == products(q, x_int)
    assert all(c["cycles"] > 0 for c in run.counters)
    # Shift groups: one program per distinct epilogue shift.
    assert len(compiled.layers[0].groups) == len(np.unique(q.layers[0].shift))
    # The dequantized output is close to the float64 network.
    out = q.layers[-1].dequantize(run.outputs[-1])
    assert np.abs(out - net.forward(x_int * 2.0 ** -q.input_frac)).max() < 0.01


def test_padding_of_the_last_batch():
    net, q, x_int, compiled = setup(images=7, batch=4)
    run = run_network(compiled, x_int)
    assert run.padded == 8 and run.outputs[-1].shape == (7, net.outputs)
    np.testing.assert_array_equal(run.outputs[-1], q.reference(x_int)[-1])


def test_skip_empty_inputs():
    net, q, x_int, compiled = setup()
    x_int = x_int.copy()
    x_int[[1, 5]] = 0
    run = run_network(compiled, x_int, skip_empty=True)
    assert run.sent[0] == 6 and run.dropped[0] == 2
    for got, want in zip(run.outputs, q.reference(x_int)):
        np.testing.assert_array_equal(got, want)


def zero_safe_network(first_bias):
    """Two ReLU layers (biases not positive after the first) and a clamped last one."""
    from zeroskip.app.nn.network import Layer, Network
    rng = np.random.default_rng(7)
    sizes = (24, 16, 12, 8)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, 0.5, (n_out, n_in)) * (rng.random((n_out, n_in)) < 0.5)
        b = np.full(n_out, first_bias if i == 0 else -0.05)
        layers.append(Layer(name=f"fc{i}", weight=w, bias=b, relu=True, clamp=(0.0, 4.0)))
    return Network(layers=layers, input_name="x", output_name="y", input_shape=(24,))


@pytest.mark.parametrize("first_bias,safe", [(-0.05, [True, True, True]),
                                             (0.2, [False, True, True])])
def test_auto_drops_exactly_where_a_zero_input_stays_zero(first_bias, safe):
    from zeroskip.app.nn.compile import zero_stays_zero
    net = zero_safe_network(first_bias)
    x = nn_helpers.sparse_inputs(8, net.inputs, 2)
    x[[0, 3, 6]] = 0
    q = quantize_network(net, x, value_width=CONFIG.value_width)
    x_int = q.quantize_inputs(x)
    assert zero_stays_zero(q) == safe
    compiled = compile_network(q, CONFIG, x_int, batch=4)
    run = run_network(compiled, x_int)                    # skip_empty="auto"
    assert run.droppable == safe
    reference = q.reference(x_int)
    for got, want in zip(run.outputs, reference):
        np.testing.assert_array_equal(got, want)
    entering = [x_int] + reference[:-1]
    for index, (layer_in, drops) in enumerate(zip(entering, safe)):
        zero = int((~layer_in.any(axis=1)).sum())
        assert run.dropped[index] == (zero if drops else 0)
    assert run.dropped[0] == (3 if safe[0] else 0)
    never = run_network(compiled, x_int, skip_empty=False)
    assert never.dropped == [0, 0, 0] and never.sent == [8, 8, 8]


def test_auto_keeps_every_input_when_the_last_layer_is_linear():
    """tiny_network's last layer has no ReLU or clamp: a zero input may not stay zero."""
    from zeroskip.app.nn.compile import zero_stays_zero
    net, q, x_int, compiled = setup()
    x_int = x_int.copy()
    x_int[[1, 5]] = 0
    assert zero_stays_zero(q) == [False, False]
    run = run_network(compiled, x_int)
    assert run.dropped == [0, 0] and run.sent == [8, 8]


def test_skip_empty_must_be_auto_or_a_bool():
    net, q, x_int, compiled = setup()
    with pytest.raises(InputError, match=r"^skip_empty must be 'auto', True or False, "
                                         r"not 'yes'$"):
        run_network(compiled, x_int, skip_empty="yes")
    with pytest.raises(InputError, match=r"^skip_empty must be 'auto', True or False, not 1$"):
        run_network(compiled, x_int, skip_empty=1)


def test_column_mode_where_activations_are_sparse():
    from zeroskip.app.nn.network import Layer, Network
    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.3, (32, 200)) * (rng.random((32, 200)) < 0.3)
    net = Network(layers=[Layer("wide", w, bias=np.full(32, -0.1), relu=True)])
    x = rng.random((8, 200)) * (rng.random((8, 200)) < 0.03)
    q = quantize_network(net, x, value_width=16)
    x_int = q.quantize_inputs(x)
    compiled = compile_network(q, CONFIG, x_int, batch=4)
    assert "csc" in compiled.layers[0].formats()
    run = run_network(compiled, x_int)
    np.testing.assert_array_equal(run.outputs[0], q.reference(x_int)[0])


def test_wrong_input_shape():
    net, q, x_int, compiled = setup()
    with pytest.raises(InputError, match=r"inputs have shape \(8, 5\) but the network takes "
                                         r"\(images, 24\)"):
        run_network(compiled, x_int[:, :5])


def test_config_must_match_the_quantization():
    net, q, x_int, _ = setup()
    with pytest.raises(InputError, match="quantized to 16-bit values"):
        compile_network(q, CONFIG.replace(value_width=8, acc_width=24), x_int)


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=pytest.mark.xdist_group(f"formats-{b}")) for b in ("icarus", "verilator")
])
def test_rtl_equals_model(backend):
    """Outputs and every counter of the generated Verilog equal the ISA model's."""
    net, q, x_int, compiled = setup(images=4, batch=2)
    model = run_network(compiled, x_int)
    rtl = run_network(compiled, x_int, backend=backend)
    for got, want in zip(rtl.outputs, model.outputs):
        np.testing.assert_array_equal(got, want)
    assert rtl.counters == model.counters


def test_accelerator_api():
    from zeroskip.app.api import Accelerator
    net = nn_helpers.tiny_network(5)
    x = nn_helpers.sparse_inputs(6, net.inputs, 6)
    acc = Accelerator(CONFIG)
    compiled = acc.compile_network(net, x, batch=4)
    result = acc.infer(compiled, x)
    assert result.exact and result.y.shape == (6, net.outputs)
    assert result.cycles == sum(c["cycles"] for c in result.run.counters) > 0
    assert np.abs(result.y - net.forward(x)).max() < 0.01
