"""The Sparse DNN Graph Challenge network (1024 neurons, 30 layers) as a :class:`Network`.

The data (Matrix Market, gzip) ships in ``examples/data/graph-challenge/``
with its provenance. Inference, per layer: ``Y = min(max(Y @ W + bias, 0),
32)`` with ``bias = -0.3``; the images whose last output row is non-empty are
the categories.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse

from zeroskip.app.nn.network import Layer, Network
from zeroskip.core.errors import InputError

__all__ = ["BIAS", "CLAMP", "load", "categories"]

BIAS = -0.3
CLAMP = 32.0


def _read(path):
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file (the Graph Challenge data)")
    return scipy.sparse.csr_matrix(scipy.io.mmread(str(path)))


def load(directory, *, neurons=1024, layers=30):
    """``(network, images, truth)``: the network, the input images (dense
    float64, one row per image) and the sorted 0-based truth categories."""
    directory = Path(directory)
    net_layers = []
    for index in range(1, layers + 1):
        w = _read(directory / f"n{neurons}-l{index}.mtx.gz")
        net_layers.append(Layer(name=f"layer{index}", weight=scipy.sparse.csr_matrix(w.T),
                                bias=np.full(neurons, BIAS), relu=True, clamp=(0.0, CLAMP)))
    images = _read(directory / f"sparse-images-{neurons}_subset.mtx.gz").toarray()
    truth = _read(directory / f"neuron{neurons}-l120-categories_subset.mtx.gz")
    truth = np.sort(truth.tocoo().row)
    network = Network(layers=net_layers, input_name="images", output_name="scores",
                      input_shape=(neurons,), name=f"graph-challenge-{neurons}x{layers}")
    return network, images, truth


def categories(outputs):
    """Images (0-based) whose output row has a nonzero."""
    return np.flatnonzero(np.asarray(outputs).any(axis=1))
