"""Quantization of a network to the accelerator's integers.

- Weights: signed ``value_width``-bit integers with a power-of-two scale per
  output channel (``w ≈ w_int * 2 ** -w_frac[o]``), the largest for which the
  row's values fit and the worst-case row sum fits the accumulator.
- Activations: one power-of-two scale per layer boundary
  (``x ≈ x_int * 2 ** -x_frac``), calibrated from sample inputs (the largest
  scale at which the largest sample magnitude still fits the value width).
  Where the sample's activations are all zero the scale comes from the
  layer's clamp range, else from its input; every scale is at most the one
  at which the next layer's bias still fits the accumulator.
- Accumulators: ``acc_width`` bits (32). Row ``o`` of a layer sums at scale
  ``2 ** -(w_frac[o] + x_frac)``; the bias is added at that scale and the
  epilogue shifts by ``w_frac[o] + x_frac - y_frac`` (rounding to nearest),
  applies ReLU and the clamp and saturates to the value width, so its output
  is the next layer's input integers.
- The last layer without an activation is read back raw (accumulator plus
  bias), dequantized per row.

:meth:`QuantizedNetwork.reference` computes exactly what the hardware
computes (the ISA's epilogue rule), with NumPy; the accelerator's outputs
must equal it bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

from zeroskip.core import arith
from zeroskip.core.errors import InputError
from zeroskip.firmware.quant import acc_exponents, round_half_away, value_exponents

__all__ = ["QuantLayer", "QuantizedNetwork", "quantize_network"]

#: The largest ``SET_EPI`` shift.
MAX_SHIFT = 31


def _frac_for(maxabs, qmax, cap=40):
    """Largest ``f`` with ``round(maxabs * 2 ** f) <= qmax``, at most ``cap`` (``cap`` if 0)."""
    if maxabs <= 0:
        return cap
    return min(int(value_exponents([maxabs], qmax)[0]), cap)


@dataclasses.dataclass
class QuantLayer:
    """One layer in integers.

    Attributes
    ----------
    name : str
    weight : scipy.sparse.csr_matrix of int64, shape (outputs, inputs)
    w_frac : numpy.ndarray of int64, shape (outputs,)
        Per output channel: ``w ≈ weight * 2 ** -w_frac``.
    x_frac, y_frac : int
        Scales of the input and (with the epilogue) of the output.
    bias : numpy.ndarray of int64 or None
        At accumulator scale (``2 ** -(w_frac + x_frac)``).
    epilogue : bool
        Whether the output passes the epilogue (else raw accumulators).
    shift : numpy.ndarray of int64, shape (outputs,)
    relu : bool
    clamp : (int, int) or None
        In output integers.
    """

    name: str
    weight: scipy.sparse.csr_matrix
    w_frac: np.ndarray
    x_frac: int
    y_frac: int
    bias: np.ndarray | None
    epilogue: bool
    shift: np.ndarray
    relu: bool
    clamp: tuple | None

    @property
    def shape(self):
        return tuple(int(v) for v in self.weight.shape)

    def acc_frac(self):
        """Per row, the fractional bits of the accumulator."""
        return self.w_frac + self.x_frac

    def groups(self):
        """``(shift, rows)`` for each distinct epilogue shift (one ``SET_EPI`` each)."""
        if not self.epilogue:
            return [(0, np.arange(self.shape[0]))]
        return [(int(s), np.flatnonzero(self.shift == s)) for s in np.unique(self.shift)]

    def dequantize(self, y_int):
        """Float outputs of this layer from its output integers ``(batch, outputs)``."""
        y = np.asarray(y_int, dtype=np.float64)
        if self.epilogue:
            return y * 2.0 ** -self.y_frac
        return y * 2.0 ** -self.acc_frac().astype(np.float64)

    def scales(self):
        """The scales, for reports (JSON-compatible)."""
        fr = self.w_frac
        return {"weight_frac_bits": [int(v) for v in fr],
                "weight_scale_range": [2.0 ** -int(fr.max()), 2.0 ** -int(fr.min())],
                "input_frac_bits": int(self.x_frac),
                "output_frac_bits": int(self.y_frac) if self.epilogue else None,
                "epilogue_shifts": sorted({int(s) for s in self.shift}) if self.epilogue
                else [],
                "readback": "epilogue" if self.epilogue else "raw accumulator"}


@dataclasses.dataclass
class QuantizedNetwork:
    """A network in integers for one value width.

    Attributes
    ----------
    layers : list of QuantLayer
    value_width, acc_width : int
    input_frac : int
        Scale of the network's input.
    """

    layers: list
    value_width: int
    acc_width: int
    input_frac: int

    @property
    def value_max(self):
        return (1 << (self.value_width - 1)) - 1

    def quantize_inputs(self, x):
        """``(batch, features)`` float inputs to integers (rounded, saturated)."""
        q = round_half_away(np.asarray(x, dtype=np.float64) * 2.0 ** self.input_frac)
        return np.clip(q, -self.value_max - 1, self.value_max).astype(np.int64)

    def layer_reference(self, index, x_int):
        """Output integers of layer ``index`` for input integers ``(batch, inputs)``."""
        layer = self.layers[index]
        acc = np.asarray((layer.weight @ np.asarray(x_int, dtype=np.int64).T).T,
                         dtype=np.int64)
        if layer.bias is not None:
            acc = acc + layer.bias
        if not layer.epilogue:
            return acc
        lo, hi = (-self.value_max - 1, self.value_max) if layer.clamp is None else layer.clamp
        return arith.epilogue(acc, shift=layer.shift, relu=layer.relu, clamp_lo=lo, clamp_hi=hi,
                              value_width=self.value_width)

    def reference(self, x_int):
        """Every layer's output integers (what the accelerator must produce)."""
        outs = []
        for index in range(len(self.layers)):
            x_int = self.layer_reference(index, x_int)
            outs.append(x_int)
        return outs

    def forward(self, x):
        """Dequantized outputs of the last layer for float inputs."""
        outs = self.reference(self.quantize_inputs(x))
        return self.layers[-1].dequantize(outs[-1])

    def scales(self):
        return {"input_frac_bits": int(self.input_frac),
                "layers": [layer.scales() for layer in self.layers]}


def _weight_fracs(w, qmax, x_qmax, acc_max, cap):
    """Per row, the largest fractional bits (within ``[-cap, cap]``) at which the
    values fit and the worst-case sum (every input at ``x_qmax``) fits the
    accumulator: the firmware quantizer's exponent rules."""
    a = scipy.sparse.csr_matrix(np.asarray(w, dtype=np.float64))
    rows = w.shape[0]
    peak = np.abs(w).max(axis=1) if w.size else np.zeros(rows)
    nonzero = peak > 0
    fracs = np.minimum(value_exponents(peak, qmax),
                       acc_exponents(a, np.full(a.nnz, float(x_qmax)), acc_max))
    fracs = np.clip(fracs, -cap, cap)
    fracs[~nonzero] = cap
    if nonzero.any() and not nonzero.all():
        # Empty rows: any scale; take the most common so as not to add a shift group.
        values, counts = np.unique(fracs[nonzero], return_counts=True)
        fracs[~nonzero] = values[np.argmax(counts)]
    return fracs


def _bias_cap(bias, w_frac, acc_max):
    """The largest input fraction bits at which every row's bias, at accumulator
    scale ``2 ** -(w_frac + x_frac)``, still fits the accumulator (``None``: no bias)."""
    if bias is None:
        return None
    magnitude = np.abs(np.asarray(bias, dtype=np.float64))
    live = magnitude > 0
    if not live.any():
        return None
    return int((value_exponents(magnitude[live], acc_max) - w_frac[live]).min())


def _calibrated_frac(act, qmax, cap):
    """The scale the calibration sample asks for, ``None`` if its range is degenerate
    (all zero or not finite): then it says nothing about the scale."""
    act = np.abs(np.asarray(act, dtype=np.float64))
    peak = act[np.isfinite(act)].max(initial=0.0)
    return _frac_for(peak, qmax, cap) if peak > 0 else None


def _fallback_frac(layer, x_frac, qmax, cap):
    """The output scale of ``layer`` when its calibration outputs are degenerate:
    the clamp's range where the layer bounds its outputs, else its input's scale."""
    if layer.clamp is not None:
        lo, hi = (float(v) for v in layer.clamp)
        if layer.relu:
            lo, hi = max(lo, 0.0), max(hi, 0.0)
        bound = max(abs(lo), abs(hi))
        if np.isfinite(bound) and bound > 0:
            return _frac_for(bound, qmax, cap)
    return int(x_frac)


def _layer_weights(index, layer, *, qmax, acc_max, value_width, weight_frac_bits,
                   per_channel):
    """``(w_int, w_frac)`` of one layer (see :func:`_weight_fracs`)."""
    w = layer.dense_weight()
    if weight_frac_bits is not None:
        w_frac = np.full(w.shape[0], int(weight_frac_bits), dtype=np.int64)
    else:
        w_frac = _weight_fracs(w, qmax, qmax, acc_max, 2 * value_width + 8)
        if not per_channel:
            w_frac = np.full(w.shape[0], int(w_frac.min()), dtype=np.int64)
    w_int = round_half_away(w * 2.0 ** w_frac[:, None])
    if np.abs(w_int).max(initial=0) > qmax:
        raise InputError(f"layer {index} ({layer.name}): weights do not fit "
                         f"{value_width} bits at the forced scale")
    return w_int.astype(np.int64), w_frac


def _forced_fracs(act_frac_bits, count):
    if act_frac_bits is None:
        return [None] * (count + 1)
    if isinstance(act_frac_bits, (list, tuple)):
        forced = list(act_frac_bits)
        if len(forced) != count + 1:
            raise InputError(f"act_frac_bits: {len(forced)} values for {count + 1} layer "
                             f"boundaries")
        return forced
    return [int(act_frac_bits)] * (count + 1)


def _output_scale(index, layer, acc_frac, want):
    """``(y_frac, shift)`` of an epilogue layer: ``want``, at most the
    accumulator's scale (shifts are not negative) and at most
    :data:`MAX_SHIFT` below it."""
    y_frac = int(min(want, acc_frac.min()))
    shift = acc_frac - y_frac
    if shift.max() > MAX_SHIFT:
        y_frac = int(acc_frac.max() - MAX_SHIFT)
        shift = acc_frac - y_frac
        if shift.min() < 0:
            raise InputError(f"layer {index} ({layer.name}): the weight scales span "
                             f"more than the epilogue's {MAX_SHIFT}-bit shift")
    return y_frac, shift


def _bias_int(index, layer, acc_frac, acc_max, acc_width):
    if layer.bias is None:
        return None
    bias = round_half_away(layer.bias * 2.0 ** acc_frac.astype(np.float64)).astype(np.int64)
    if np.abs(bias).max(initial=0) > acc_max:
        o = int(np.argmax(np.abs(bias)))
        raise InputError(f"layer {index} ({layer.name}): bias {layer.bias[o]:g} of "
                         f"output {o} does not fit the {acc_width}-bit accumulator")
    return bias


def _clamp_int(clamp, y_frac, qmax):
    if clamp is None:
        return None
    lo, hi = clamp
    return (int(np.clip(np.ceil(lo * 2.0 ** y_frac - 0.5), -qmax - 1, qmax))
            if np.isfinite(lo) else -qmax - 1,
            int(np.clip(np.floor(hi * 2.0 ** y_frac + 0.5), -qmax - 1, qmax))
            if np.isfinite(hi) else qmax)


def quantize_network(network, calibration, *, value_width=8, acc_width=32,
                     weight_frac_bits=None, act_frac_bits=None, per_channel=True):
    """Quantize ``network`` with activation scales calibrated on ``calibration``.

    A boundary whose calibration activations are all zero (or not finite)
    takes the scale of the layer's clamp range where it has one, else the
    scale of the layer's input. A calibrated scale is lowered where the next
    layer's bias would not fit the accumulator at it.

    Parameters
    ----------
    network : Network
    calibration : array, shape (batch, features)
        Sample inputs (float).
    value_width : int
        8 or 16.
    acc_width : int
    weight_frac_bits : int, optional
        Force every weight scale to ``2 ** -weight_frac_bits``.
    act_frac_bits : int or list of int, optional
        Force the activation scales (one for all boundaries, or one per
        boundary: the input and every layer's output).
    per_channel : bool
        One weight scale per output channel (default) or one per layer.

    Returns
    -------
    QuantizedNetwork

    Raises
    ------
    InputError
        If a bias does not fit the accumulator or the scales cannot be met.
    """
    if value_width not in (8, 16):
        raise InputError(f"--value-width must be 8 or 16, not {value_width!r}")
    qmax = (1 << (value_width - 1)) - 1
    acc_max = (1 << (acc_width - 1)) - 1
    act_cap = 2 * value_width
    acts = network.activations(calibration)
    count = len(network.layers)
    forced = _forced_fracs(act_frac_bits, count)
    weights = [_layer_weights(index, layer, qmax=qmax, acc_max=acc_max,
                              value_width=value_width, weight_frac_bits=weight_frac_bits,
                              per_channel=per_channel)
               for index, layer in enumerate(network.layers)]
    # Per layer, the largest input scale at which its bias fits the accumulator.
    caps = [_bias_cap(layer.bias, w_frac, acc_max)
            for layer, (_, w_frac) in zip(network.layers, weights)] + [None]
    x_frac = forced[0]
    if x_frac is None:
        x_frac = _calibrated_frac(acts[0], qmax, act_cap)
        x_frac = act_cap if x_frac is None else x_frac
        x_frac = x_frac if caps[0] is None else min(x_frac, caps[0])
    input_frac = x_frac
    layers = []
    for index, (layer, (w_int, w_frac)) in enumerate(zip(network.layers, weights)):
        acc_frac = w_frac + x_frac
        bias = _bias_int(index, layer, acc_frac, acc_max, acc_width)
        last = index == count - 1
        epilogue = not (last and not layer.relu and layer.clamp is None)
        y_frac, shift, clamp = 0, np.zeros(w_int.shape[0], dtype=np.int64), None
        if epilogue:
            want = forced[index + 1]
            if want is None:
                want = _calibrated_frac(acts[index + 1], qmax, act_cap)
                if want is None:
                    want = _fallback_frac(layer, x_frac, qmax, act_cap)
                if caps[index + 1] is not None:
                    want = min(want, caps[index + 1])
            y_frac, shift = _output_scale(index, layer, acc_frac, want)
            clamp = _clamp_int(layer.clamp, y_frac, qmax)
        layers.append(QuantLayer(
            name=layer.name, weight=scipy.sparse.csr_matrix(w_int),
            w_frac=w_frac, x_frac=int(x_frac), y_frac=int(y_frac), bias=bias,
            epilogue=epilogue, shift=shift.astype(np.int64), relu=bool(layer.relu),
            clamp=clamp))
        x_frac = y_frac
    return QuantizedNetwork(layers=layers, value_width=value_width, acc_width=acc_width,
                            input_frac=int(input_frac))
