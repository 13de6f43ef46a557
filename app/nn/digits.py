"""The digits example's network: scikit-learn's bundled 8x8 digits and an MLP.

Everything runs in seconds and needs no download: the data ships with
scikit-learn. :func:`train` fits a 64-64-10 ReLU MLP, :func:`to_network`
turns it into a :class:`Network` (written to ONNX with ``onnx.helper`` by
:func:`~zeroskip.app.nn.onnx_io.save_onnx`: no exporter needed), and
:func:`gradual_prune` prunes it in steps with ``partial_fit`` and the masks
re-applied after every step.
"""

from __future__ import annotations

import warnings

import numpy as np

from zeroskip.app.nn.network import Layer, Network
from zeroskip.app.nn.prune import magnitude_mask

__all__ = ["load_data", "train", "to_network", "gradual_prune", "accuracy"]


def load_data(seed=0):
    """``(x_train, x_test, y_train, y_test)``: pixels scaled to [0, 1], a 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    return train_test_split(x, digits.target, test_size=0.25, random_state=seed,
                            stratify=digits.target)


def train(x_train, y_train, *, hidden=64, seed=0, max_iter=300):
    """A fitted ``MLPClassifier`` (ReLU, Adam)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    model = MLPClassifier(hidden_layer_sizes=(hidden,), activation="relu", max_iter=max_iter,
                          random_state=seed, learning_rate_init=3e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    return model


def to_network(model, name="digits-mlp"):
    """The MLP as a :class:`Network` (its logits: softmax is left out)."""
    layers = []
    count = len(model.coefs_)
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        layers.append(Layer(name=f"fc{i}", weight=np.asarray(w, dtype=np.float64).T.copy(),
                            bias=np.asarray(b, dtype=np.float64).copy(),
                            relu=i < count - 1))
    return Network(layers=layers, input_name="pixels", output_name="logits",
                   input_shape=(model.coefs_[0].shape[0],), name=name)


def accuracy(scores, labels):
    return float(np.mean(np.argmax(scores, axis=1) == np.asarray(labels)))


def gradual_prune(model, x_train, y_train, sparsity, *, steps=6, epochs=30, seed=0):
    """Prune ``model`` to ``sparsity`` in ``steps`` prune-and-retrain steps.

    Each step raises every layer's sparsity (cubic schedule), zeroes the
    smallest weights and retrains with ``partial_fit``, re-applying the masks
    after every epoch so that pruned weights stay zero.

    Returns
    -------
    (model, masks)
        The retrained model (a copy) and the final masks (True = kept).
    """
    import copy
    model = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    classes = np.unique(y_train)
    masks = [np.ones_like(w, dtype=bool) for w in model.coefs_]
    for step in range(1, steps + 1):
        target = sparsity * (1 - (1 - step / steps) ** 3)
        masks = [magnitude_mask(w.T, target).T for w in model.coefs_]
        for _ in range(epochs):
            for w, mask in zip(model.coefs_, masks):
                w *= mask
            order = rng.permutation(len(x_train))
            model.partial_fit(x_train[order], y_train[order], classes=classes)
        for w, mask in zip(model.coefs_, masks):
            w *= mask
    return model, [m.T for m in masks]
