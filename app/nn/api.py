"""Networks through :class:`zeroskip.app.api.Accelerator`.

``Accelerator.compile_network`` and ``Accelerator.infer`` call these two
functions with the accelerator itself: its configuration is the hardware the
network is compiled for (its value width the quantization's), its backend
where the network runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zeroskip.app.nn.compile import compile_network as _compile
from zeroskip.app.nn.compile import run_network
from zeroskip.app.nn.prune import prune_network
from zeroskip.app.nn.quantize import quantize_network
from zeroskip.core.errors import ZeroskipError

__all__ = ["InferResult", "compile_network", "prune_quantize_compile", "infer"]


@dataclasses.dataclass
class InferResult:
    """Outputs of :func:`infer`.

    Attributes
    ----------
    y : numpy.ndarray
        The last layer's outputs, dequantized, one row per input.
    y_int : numpy.ndarray of int64
        The same as integers (what the accelerator read back).
    exact : bool
        Whether every layer's integers equal the quantized NumPy reference.
    run : NetworkRun
        Every layer's outputs and counters.
    """

    y: np.ndarray
    y_int: np.ndarray
    exact: bool
    run: object

    @property
    def cycles(self):
        return sum(c["cycles"] for c in self.run.counters)


def compile_network(accelerator, network, calibration, *, prune=None, nm=None, batch=16,
                    act_frac_bits=None, weight_frac_bits=None, fmt="auto"):
    """Prune (optional), quantize for ``accelerator.config`` and compile ``network``.

    ``network`` is a :class:`~zeroskip.app.nn.network.Network` or the path of an
    ONNX file; ``calibration`` sample float inputs (they set the activation
    scales and drive the cost model).
    """
    if not hasattr(network, "layers"):
        from zeroskip.app.nn.onnx_io import load_onnx
        network = load_onnx(network)
    x = network.check_inputs(calibration, what="calibration")
    _, compiled, _ = prune_quantize_compile(network, accelerator.config, x, prune=prune, nm=nm,
                                            batch=batch, act_frac_bits=act_frac_bits,
                                            weight_frac_bits=weight_frac_bits, fmt=fmt)
    return compiled


def prune_quantize_compile(network, config, calibration, *, inputs=None, prune=None, nm=None,
                           batch=16, act_frac_bits=None, weight_frac_bits=None, fmt="auto",
                           stream=False):
    """Prune (optional), quantize and compile ``network`` for ``config``: the one chain.

    ``calibration`` (checked float inputs) sets the activation scales;
    ``inputs`` (default: the calibration inputs) are quantized with them and
    drive the cost model, a batch of ``min(batch, len(inputs))``. Returns
    ``(network, compiled, x_int)``: the pruned float network, the
    :class:`~zeroskip.app.nn.compile.CompiledNetwork` (``compiled.quantized`` is
    the quantized network) and the quantized ``inputs``. ``stream`` as for
    :func:`~zeroskip.app.nn.compile.compile_network`.
    """
    if prune is not None or nm is not None:
        network, _ = prune_network(network, sparsity=prune, nm=nm)
    q = quantize_network(network, calibration, value_width=config.value_width,
                         acc_width=config.acc_width, act_frac_bits=act_frac_bits,
                         weight_frac_bits=weight_frac_bits)
    inputs = calibration if inputs is None else inputs
    x_int = q.quantize_inputs(inputs)
    compiled = _compile(q, config, x_int, batch=min(batch, len(inputs)), fmt=fmt,
                        stream=stream)
    return network, compiled, x_int


def infer(accelerator, compiled, x, *, skip_empty="auto"):
    """Run ``compiled`` on float inputs ``x`` on the accelerator's backend.

    ``skip_empty`` as for :func:`~zeroskip.app.nn.compile.run_network`: by default
    inputs whose activations entering a layer are all zero are dropped where
    they provably stay zero, as ``zeroskip infer`` and the examples drop them
    (``result.run.dropped`` counts them per layer). On the ``board`` backend the
    network runs chained and resident (:func:`~zeroskip.app.nn.compile.run_network`):
    its program is loaded once over the accelerator's ``port`` and every batch writes
    its inputs and reads its outputs only; ``skip_empty`` then drops nothing.
    """
    if compiled.config != accelerator.config:
        raise ZeroskipError("the network was compiled for another configuration than this "
                            "accelerator's")
    q = compiled.quantized
    x_int = q.quantize_inputs(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
    options = {k: v for k, v in accelerator.backend_options.items()
               if k in ("build_dir", "port", "baudrate")}
    run = run_network(compiled, x_int, backend=accelerator.backend, skip_empty=skip_empty,
                      **options)
    # A chained run reads back the last layer alone (the others are None).
    exact = all(np.array_equal(a, b) for a, b in zip(run.outputs, q.reference(x_int))
                if a is not None)
    y_int = run.outputs[-1]
    return InferResult(y=q.layers[-1].dequantize(y_int), y_int=y_int, exact=exact, run=run)
