"""Magnitude pruning: unstructured to a target sparsity, or N:M (such as 2:4).

Zeros already in a weight (a network pruned elsewhere) stay zeros and count
towards the target; pruning only ever removes the smallest magnitudes.
"""

from __future__ import annotations

import numpy as np

from zeroskip.core.errors import InputError
from zeroskip.firmware.formats import parse_nm

__all__ = ["check_sparsity", "magnitude_mask", "nm_mask", "prune_network", "apply_masks"]


def check_sparsity(sparsity, what="--prune"):
    """``sparsity`` as a float in ``[0, 1)``, or an :class:`InputError`."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise InputError(f"{what}: sparsity must be a number in [0, 1), not {sparsity!r}") \
            from None
    if not 0.0 <= value < 1.0:
        raise InputError(f"{what}: sparsity must be in [0, 1), not {sparsity}")
    return value


def magnitude_mask(weight, sparsity):
    """Mask (True = kept) removing the ``sparsity`` fraction of smallest ``|weight|``.

    Zeros already present are counted first; ties are broken by position, so
    the result is deterministic.
    """
    sparsity = check_sparsity(sparsity, "sparsity")
    w = np.asarray(weight, dtype=np.float64)
    flat = np.abs(w).reshape(-1)
    remove = int(round(sparsity * flat.size))
    mask = np.ones(flat.size, dtype=bool)
    if remove:
        order = np.argsort(flat, kind="stable")
        mask[order[:remove]] = False
    mask &= flat != 0
    return mask.reshape(w.shape)


def nm_mask(weight, nm):
    """Mask keeping the ``N`` largest ``|weight|`` of every ``M`` consecutive inputs.

    ``weight`` has shape ``(outputs, inputs)``; groups run along the inputs
    (the last group may be shorter).
    """
    n, m = parse_nm(nm)
    w = np.asarray(weight, dtype=np.float64)
    rows, cols = w.shape
    padded = -(-cols // m) * m
    mag = np.full((rows, padded), -1.0)
    mag[:, :cols] = np.abs(w)
    groups = mag.reshape(rows, padded // m, m)
    order = np.argsort(-groups, axis=2, kind="stable")
    keep = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    keep = keep.reshape(rows, padded)[:, :cols]
    return keep & (w != 0)


def apply_masks(network, masks):
    """A copy of ``network`` with each weight multiplied by its mask."""
    weights = [layer.dense_weight() * mask for layer, mask in zip(network.layers, masks)]
    return network.replace_weights(weights)


def prune_network(network, *, sparsity=None, nm=None):
    """Prune every layer by magnitude (one shot).

    Parameters
    ----------
    sparsity : float in [0, 1), optional
        Fraction of each layer's weights to remove (unstructured).
    nm : str or (int, int), optional
        N:M structure (``"2:4"``) instead.

    Returns
    -------
    (Network, list of numpy.ndarray)
        The pruned network and the masks (True = kept).
    """
    if (sparsity is None) == (nm is None):
        raise InputError("prune with either a sparsity or an N:M pattern, not both or neither")
    if nm is not None:
        try:
            nm = parse_nm(nm)
        except ValueError as error:
            raise InputError(f"--nm: {error}") from None
        masks = [nm_mask(layer.dense_weight(), nm) for layer in network.layers]
    else:
        sparsity = check_sparsity(sparsity)
        masks = [magnitude_mask(layer.dense_weight(), sparsity) for layer in network.layers]
    return apply_masks(network, masks), masks
