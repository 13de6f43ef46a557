"""Pruning and quantization units."""

import numpy as np
import pytest

from zeroskip.app.nn.network import Layer, Network
from zeroskip.app.nn.prune import check_sparsity, magnitude_mask, nm_mask, prune_network
from zeroskip.app.nn.quantize import quantize_network
from zeroskip.core.errors import InputError


def test_magnitude_mask_removes_the_smallest_and_keeps_existing_zeros():
    w = np.array([[0.0, -5.0, 1.0, 0.5], [2.0, 0.0, -0.1, 3.0]])
    mask = magnitude_mask(w, 0.5)
    # Two zeros already present count; 0.1 and 0.5 are the next smallest.
    assert mask.tolist() == [[False, True, True, False], [True, False, False, True]]
    assert magnitude_mask(w, 0.0).sum() == 6     # existing zeros stay zeros


def test_nm_mask_keeps_n_largest_of_each_group():
    w = np.array([[1.0, -4.0, 3.0, 2.0, 0.0, 0.0, 0.0, 7.0]])
    mask = nm_mask(w, "2:4")
    assert mask.tolist() == [[False, True, True, False, False, False, False, True]]
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 32))
    mask = nm_mask(w, (2, 4))
    assert (mask.reshape(16, 8, 4).sum(axis=2) == 2).all()


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, "x"])
def test_sparsity_outside_range(value):
    with pytest.raises(InputError, match=r"--prune: sparsity must be"):
        check_sparsity(value)


def test_prune_network_reaches_target():
    rng = np.random.default_rng(1)
    net = Network(layers=[Layer("a", rng.normal(size=(20, 30))),
                          Layer("b", rng.normal(size=(5, 20)))])
    pruned, masks = prune_network(net, sparsity=0.9)
    assert [layer.nnz for layer in pruned.layers] == [60, 10]
    with pytest.raises(InputError, match="--nm: N:M must look like 2:4, not '2-4'"):
        prune_network(net, nm="2-4")


def make_net(seed=0):
    rng = np.random.default_rng(seed)
    return Network(layers=[
        Layer("fc0", rng.normal(0, 0.3, (12, 10)) * (rng.random((12, 10)) < 0.5),
              bias=rng.normal(0, 0.1, 12), relu=True, clamp=(0.0, 1.5)),
        Layer("fc1", rng.normal(0, 0.3, (4, 12)), bias=rng.normal(0, 0.1, 4)),
    ])


@pytest.mark.parametrize("width", [8, 16])
def test_quantized_scales_are_powers_of_two_and_fit(width):
    net = make_net()
    x = np.random.default_rng(2).random((64, 10))
    q = quantize_network(net, x, value_width=width)
    qmax = (1 << (width - 1)) - 1
    for layer, float_layer in zip(q.layers, net.layers):
        w = layer.weight.toarray()
        assert np.abs(w).max() <= qmax
        # Each row's scale is the largest power of two at which its values fit
        # and its worst-case sum (every input at the largest value) fits 32 bits.
        up = np.round(np.abs(float_layer.weight) * 2.0 ** (layer.w_frac[:, None] + 1))
        assert ((up.max(axis=1) > qmax) | (up.sum(axis=1) * qmax > 2 ** 31 - 1)).all()
        assert (np.abs(w).sum(axis=1) * qmax <= 2 ** 31 - 1).all()
        np.testing.assert_allclose(w * 2.0 ** -layer.w_frac[:, None], float_layer.weight,
                                   atol=2.0 ** -layer.w_frac.min())
    assert q.layers[0].epilogue and not q.layers[1].epilogue
    assert q.layers[0].clamp == (0, min(qmax, int(1.5 * 2 ** q.layers[0].y_frac + 0.5)))
    # The dequantized outputs approach the float64 network as the width grows.
    error = np.abs(q.forward(x) - net.forward(x)).max()
    assert error < (0.1 if width == 8 else 0.001)
    scales = q.scales()
    assert scales["layers"][0]["readback"] == "epilogue"
    assert scales["layers"][1]["readback"] == "raw accumulator"


def test_reference_follows_the_epilogue_rule():
    net = make_net()
    x = np.random.default_rng(3).random((8, 10))
    q = quantize_network(net, x, value_width=8)
    layer = q.layers[0]
    x_int = q.quantize_inputs(x)
    acc = x_int @ layer.weight.toarray().T + layer.bias
    shift = layer.shift
    expect = (acc + (1 << (shift - 1))) >> shift
    expect = np.clip(np.maximum(expect, 0), *layer.clamp)
    np.testing.assert_array_equal(q.layer_reference(0, x_int), expect)
