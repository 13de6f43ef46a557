"""The scipy.sparse CPU peer: the same answers as the float network, both variants."""

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from zeroskip.app.nn import baseline
from zeroskip.app.nn import graph_challenge as gc

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "graph-challenge"


def _zero_keeping(seed=5):
    """A network whose hidden layers keep zeros (bias <= 0, ReLU) and whose last does not."""
    net = nn_helpers.tiny_network(seed, sizes=(24, 16, 12, 8))
    layers = [dataclasses.replace(layer, bias=-np.abs(layer.bias)) for layer in net.layers[:-1]]
    return dataclasses.replace(net, layers=layers + [net.layers[-1]])


@pytest.mark.parametrize("sparse", [False, True])
def test_both_variants_equal_the_float_network(sparse):
    net = _zero_keeping()
    x = nn_helpers.sparse_inputs(40, net.inputs, 2, density=0.15)
    x[:5] = 0                                   # empty rows: dropped by the sparse variant
    layers = [baseline._SparseLayer(layer) for layer in net.layers]
    assert [layer.keeps_zeros for layer in layers] == [True, True, False]
    operand = baseline.scipy.sparse.csr_matrix(x) if sparse else x
    out = baseline._forward(layers, operand, sparse=sparse)
    reference = net.forward(x)
    np.testing.assert_allclose(out, reference, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out.argmax(1), reference.argmax(1))
    assert np.all(out[:5] == reference[0])      # a zero input's output, filled back in


def test_scipy_peer_times_and_chooses_between_variants():
    net = _zero_keeping(6)
    x = nn_helpers.sparse_inputs(30, net.inputs, 3, density=0.2)
    peer = baseline.scipy_sparse_times(net, x, repeats=2, min_seconds=0)
    assert set(peer["methods_s"]) == {"dense activations", "sparse activations"}
    assert peer["seconds"] == min(peer["methods_s"].values()) > 0
    assert peer["method"] == min(peer["methods_s"], key=peer["methods_s"].get)
    assert peer["layers_sparse"] == (2 if peer["method"] == "sparse activations" else 0)
    assert "pinned to CPU" in peer["one_core"]
    np.testing.assert_array_equal(peer["outputs"].argmax(1), net.forward(x).argmax(1))


def test_a_positive_bias_leaves_only_the_dense_variant():
    net = nn_helpers.tiny_network(3)
    assert (net.layers[0].bias > 0).any()
    x = nn_helpers.sparse_inputs(10, net.inputs, 4)
    peer = baseline.scipy_sparse_times(net, x, repeats=1, min_seconds=0)
    assert list(peer["methods_s"]) == ["dense activations"] and peer["layers_sparse"] == 0
    np.testing.assert_allclose(peer["outputs"], net.forward(x), rtol=1e-12, atol=1e-12)


def test_graph_challenge_categories_on_scipy():
    network, images, truth = gc.load(DATA, layers=30)
    pick = np.r_[280:300]
    layers = [baseline._SparseLayer(layer) for layer in network.layers]
    assert all(layer.keeps_zeros for layer in layers)
    out = baseline._forward(layers, baseline.scipy.sparse.csr_matrix(images[pick]), sparse=True)
    np.testing.assert_array_equal(pick[gc.categories(out)], [286, 294])
    np.testing.assert_array_equal(out, network.forward(images[pick]))
