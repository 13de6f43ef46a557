"""A feed-forward network of fully connected layers, in float64.

This is what the ONNX front end produces and what pruning, quantization and
the compiler consume: a chain of :class:`Layer`, each ``y = act(W @ x + b)``
with ``W`` of shape ``(outputs, inputs)`` (dense or ``scipy.sparse``) and
``act`` the identity, ReLU or a clamp.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

from zeroskip.core.errors import InputError

__all__ = ["Layer", "Network"]


@dataclasses.dataclass
class Layer:
    """One fully connected layer ``y = clamp(relu(W @ x + b))``.

    Attributes
    ----------
    name : str
        The ONNX node (or the caller's name) the layer came from.
    weight : numpy.ndarray or scipy.sparse matrix, shape (outputs, inputs)
        Zeros are weights that were pruned.
    bias : numpy.ndarray of float64, shape (outputs,), or None
    relu : bool
    clamp : (float, float) or None
        Lower and upper bound (``-inf``/``inf`` for none).
    """

    name: str
    weight: object
    bias: np.ndarray | None = None
    relu: bool = False
    clamp: tuple | None = None

    @property
    def shape(self):
        return tuple(int(v) for v in self.weight.shape)

    @property
    def nnz(self):
        if scipy.sparse.issparse(self.weight):
            return int(self.weight.count_nonzero())
        return int(np.count_nonzero(self.weight))

    @property
    def density(self):
        rows, cols = self.shape
        return self.nnz / (rows * cols) if rows * cols else 0.0

    def dense_weight(self):
        if scipy.sparse.issparse(self.weight):
            return self.weight.toarray().astype(np.float64)
        return np.asarray(self.weight, dtype=np.float64)

    def activate(self, z):
        """The layer's activation applied to ``z`` (float)."""
        if self.relu:
            z = np.maximum(z, 0.0)
        if self.clamp is not None:
            z = np.clip(z, self.clamp[0], self.clamp[1])
        return z

    def forward(self, x):
        """``act(x @ W.T + b)`` for a batch ``x`` of shape ``(batch, inputs)``."""
        z = np.asarray(self.weight @ np.asarray(x, dtype=np.float64).T).T
        if self.bias is not None:
            z = z + self.bias
        return self.activate(z)


@dataclasses.dataclass
class Network:
    """A chain of fully connected layers.

    Attributes
    ----------
    layers : list of Layer
    input_name, output_name : str
        Names of the ONNX graph's input and output (for onnxruntime).
    input_shape : tuple
        Shape of one input as the model declares it (without the batch
        dimension); inputs are flattened to ``layers[0].shape[1]`` features.
    name : str
    """

    layers: list
    input_name: str = "input"
    output_name: str = "output"
    input_shape: tuple = ()
    name: str = "network"

    @property
    def inputs(self):
        return self.layers[0].shape[1]

    @property
    def outputs(self):
        return self.layers[-1].shape[0]

    def check_inputs(self, x, what="inputs"):
        """``x`` as a float64 ``(batch, features)`` array, or an :class:`InputError`."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise InputError(f"{what}: dtype {x.dtype} is not numeric")
        if x.ndim < 1 or x.shape[0] == 0:
            raise InputError(f"{what}: expected a batch of inputs, got shape {x.shape}")
        flat = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
        if flat.shape[1] != self.inputs:
            raise InputError(f"{what}: each input has {flat.shape[1]} features (shape "
                             f"{x.shape}) but the network takes {self.inputs}")
        flat = flat.astype(np.float64)
        if not np.isfinite(flat).all():
            index = np.argwhere(~np.isfinite(flat))[0]
            raise InputError(f"{what}: input {int(index[0])}, feature {int(index[1])} is not "
                             f"finite")
        return flat

    def forward(self, x, *, upto=None):
        """Float64 outputs of the last layer (or of layer ``upto - 1``)."""
        x = self.check_inputs(x)
        for layer in self.layers[:upto]:
            x = layer.forward(x)
        return x

    def activations(self, x):
        """The input and every layer's output, float64 (``len(layers) + 1`` arrays)."""
        x = self.check_inputs(x)
        found = [x]
        for layer in self.layers:
            x = layer.forward(x)
            found.append(x)
        return found

    def replace_weights(self, weights):
        """A copy with each layer's weight replaced (same shapes)."""
        layers = [dataclasses.replace(layer, weight=w) for layer, w in zip(self.layers, weights)]
        return dataclasses.replace(self, layers=layers)

    def summary(self):
        lines = []
        for i, layer in enumerate(self.layers):
            act = "relu" if layer.relu else ""
            if layer.clamp is not None:
                act += f" clamp[{layer.clamp[0]:g}, {layer.clamp[1]:g}]"
            lines.append(f"layer {i} {layer.name}: {layer.shape[0]}x{layer.shape[1]} "
                         f"nnz {layer.nnz} density {layer.density:.3f}"
                         f"{' bias' if layer.bias is not None else ''} {act.strip()}".rstrip())
        return lines
