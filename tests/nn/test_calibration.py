"""Activation scales when the calibration sample says nothing (all-zero layers)."""

import numpy as np
import pytest

from zeroskip.app.nn.compile import compile_network, run_network
from zeroskip.app.nn.network import Layer, Network
from zeroskip.app.nn.quantize import quantize_network
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InputError
from zeroskip.firmware.quant import value_exponents

CONFIG = AcceleratorConfig(pes=4, x_depth=256, nz_depth=512, row_depth=64, imem_depth=16,
                           formats=("csr", "coo", "bitmap", "nm", "dense", "csc"))
ACC_MAX = 2 ** 31 - 1
QMAX = 2 ** 15 - 1


def network(first_clamp, first_weight_scale=1.0):
    """fc0 (ReLU, bias -1: dead on small inputs), fc1 (ReLU, clamp [0, 4], bias
    -0.05: zero on a zero input) and a linear fc2 with a bias."""
    rng = np.random.default_rng(11)
    sizes = (24, 16, 12, 8)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, 0.5, (n_out, n_in)) * (rng.random((n_out, n_in)) < 0.5)
        if i == 0:
            layers.append(Layer("fc0", w * first_weight_scale, bias=np.full(n_out, -1.0),
                                relu=True, clamp=first_clamp))
        elif i == 1:
            layers.append(Layer("fc1", w, bias=np.full(n_out, -0.05), relu=True,
                                clamp=(0.0, 4.0)))
        else:
            layers.append(Layer("fc2", w, bias=rng.normal(0, 0.1, n_out)))
    return Network(layers=layers, input_name="x", output_name="y", input_shape=(24,))


def inputs(n, scale, seed):
    rng = np.random.default_rng(seed)
    return scale * rng.random((n, 24)) * (rng.random((n, 24)) < 0.5)


def check_runs_bit_exact(q, net, x, tolerance):
    """The ISA model equals the integer reference bit for bit; the dequantized
    outputs are close to the float64 network."""
    x_int = q.quantize_inputs(x)
    run = run_network(compile_network(q, CONFIG, x_int, batch=4), x_int, skip_empty=False)
    reference = q.reference(x_int)
    for got, want in zip(run.outputs, reference):
        np.testing.assert_array_equal(got, want)
    for layer in q.layers:
        if layer.bias is not None:
            assert np.abs(layer.bias).max() <= ACC_MAX
    error = np.abs(q.layers[-1].dequantize(reference[-1]) - net.forward(x)).max()
    assert error < tolerance
    return reference


def test_all_zero_calibration_layers_take_the_clamp_scale_and_run_bit_exact():
    """fc0 and fc1 output only zeros on the calibration sample; their scales come
    from their clamp ranges ([0, 2] and [0, 4]), not from the empty range (which
    made fc1's bias overflow the accumulator)."""
    net = network(first_clamp=(0.0, 2.0))
    calibration = inputs(16, 0.02, seed=1)
    acts = net.activations(calibration)
    assert not acts[1].any() and not acts[2].any() and acts[0].any()
    q = quantize_network(net, calibration, value_width=16)
    assert [layer.x_frac for layer in q.layers[1:]] == [
        int(value_exponents([2.0], QMAX)[0]), int(value_exponents([4.0], QMAX)[0])] == [13, 12]
    x = inputs(32, 1.0, seed=2)
    reference = check_runs_bit_exact(q, net, x, tolerance=0.01)
    assert reference[0].any() and reference[1].any()      # the inference inputs are alive


def test_all_zero_calibration_layer_without_clamp_inherits_its_input_scale():
    net = network(first_clamp=None)
    calibration = inputs(16, 0.02, seed=1)
    q = quantize_network(net, calibration, value_width=16)
    assert not net.activations(calibration)[1].any()
    assert q.layers[1].x_frac == q.layers[0].x_frac == q.input_frac
    assert q.layers[2].x_frac == 12
    check_runs_bit_exact(q, net, np.vstack([calibration, inputs(8, 0.2, seed=3)]),
                         tolerance=0.01)


def test_a_tiny_calibrated_range_is_lowered_until_the_next_bias_fits():
    """fc0's outputs are nonzero but tiny: the scale they ask for would put fc1's
    bias beyond 32 bits; it is lowered to the largest at which the bias fits."""
    net = network(first_clamp=None, first_weight_scale=1e-3)
    net.layers[0].bias[:] = 0.0
    calibration = inputs(16, 1e-3, seed=1)
    peak = np.abs(net.activations(calibration)[1]).max()
    assert 0 < peak < 1e-5
    q = quantize_network(net, calibration, value_width=16)
    fc1 = q.layers[1]
    cap = int((value_exponents([0.05], ACC_MAX)[0] - fc1.w_frac).min())
    assert fc1.x_frac == cap < int(value_exponents([peak], QMAX)[0])
    assert np.abs(fc1.bias).max() <= ACC_MAX < 2 * np.abs(fc1.bias).max()
    check_runs_bit_exact(q, net, calibration, tolerance=1e-3)


def test_a_forced_scale_that_cannot_hold_the_bias_is_one_clear_error():
    net = network(first_clamp=(0.0, 2.0))
    with pytest.raises(InputError, match=r"^layer 1 \(fc1\): bias -0\.05 of output 11 does not "
                                         r"fit the 32-bit accumulator$"):
        quantize_network(net, inputs(16, 1.0, seed=1), value_width=16,
                         act_frac_bits=[8, 30, 8, 8])
