"""The CPU peers: onnxruntime and scipy.sparse on this machine, measured in the same run.

- onnxruntime runs the network dense in float32 (zeros are multiplied like
  any other weight: it does not skip them), with one intra-op thread (pinned
  to one core, :func:`zeroskip.app.cpu.one_core`) and with all of them.
- scipy.sparse runs it the way a user with sparse weights would, in float64
  on one core (:func:`scipy_sparse_times`): CSR weights, activations kept
  sparse where they provably stay sparse (the Graph Challenge's own
  algorithm: sparse ``Y`` times sparse ``W``, the bias added to the stored
  entries, ReLU/clamp, zeros and empty rows dropped) and dense activations
  times the CSR weights elsewhere; both variants are timed and the faster
  one is the figure.

Times are wall-clock, the best of several repetitions of the whole batch,
divided by the batch size (:func:`zeroskip.app.cpu.best_seconds`). Energy per
inference is time x a power figure whose basis is stated
(:mod:`zeroskip.app.cpu_energy`). :func:`cpu_peers` is what
:func:`zeroskip.app.nn.infer.evaluate` puts under ``cpu``.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse

from zeroskip.app import cpu_energy
from zeroskip.app.cpu import best_seconds, one_core
from zeroskip.app.nn.onnx_io import to_onnx

__all__ = ["onnxruntime_times", "scipy_sparse_times", "cpu_peers"]


def _session(model_bytes, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, sess_options=options,
                                providers=["CPUExecutionProvider"])


def onnxruntime_times(network, inputs, *, repeats=5, min_seconds=0.2):
    """Seconds per inference of ``network`` on ``inputs`` (float32).

    Returns
    -------
    dict
        ``{"1_thread": s, "all_threads": s, "threads": n, "outputs": array,
        "rapl_1_thread": RAPL reading or None, "one_core": how}``.
    """
    model_bytes = to_onnx(network).SerializeToString()
    x = np.asarray(inputs, dtype=np.float32).reshape(len(inputs), -1)
    cores = os.cpu_count() or 1
    result = {"threads": cores, "images": len(x)}
    feed = {network.input_name: x}
    with one_core() as how:
        session = _session(model_bytes, 1)
        timed = best_seconds(lambda: session.run(None, feed), repeats=repeats,
                             min_seconds=min_seconds, max_runs=50)
    result.update({"1_thread": timed["best"] / len(x), "rapl_1_thread": timed["rapl"],
                   "one_core": how})
    session = _session(model_bytes, cores)
    timed = best_seconds(lambda: session.run(None, feed), repeats=repeats,
                         min_seconds=min_seconds, max_runs=50, energy=False)
    result["all_threads"] = timed["best"] / len(x)
    result["outputs"] = session.run(None, feed)[0]
    return result


# scipy.sparse ------------------------------------------------------------------------------------

class _SparseLayer:
    """One layer as scipy holds it: ``w`` CSR (outputs x inputs), ``wt`` its CSR transpose."""

    def __init__(self, layer):
        self.layer = layer
        self.w = scipy.sparse.csr_matrix(layer.weight, dtype=np.float64)
        self.w.eliminate_zeros()
        self.wt = scipy.sparse.csr_matrix(self.w.T)
        self.bias = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        zero_in = self.bias if self.bias is not None else np.zeros(layer.shape[0])
        #: A zero input gives a zero output, so zeros (and empty rows) may be dropped.
        self.keeps_zeros = bool(np.all(layer.activate(zero_in) == 0))

    def sparse(self, y):
        """``Y @ W.T``, ``Y`` CSR (images x inputs): bias on the stored entries, act, drop 0s."""
        z = y @ self.wt
        if self.bias is not None:
            z.data += self.bias[z.indices]
        z.data = self.layer.activate(z.data)
        z.eliminate_zeros()
        return z

    def dense(self, y):
        """``act(Y @ W.T + b)`` with ``Y`` dense (images x inputs), ``W`` CSR."""
        z = (self.w @ y.T).T
        if self.bias is not None:
            z += self.bias
        return self.layer.activate(z)


def _forward(layers, x, *, sparse):
    """The network on ``x`` (CSR when ``sparse`` and the first layer keeps zeros, else dense).

    With ``sparse``, a layer that keeps zeros runs on sparse activations and
    the images whose activations are all zero are dropped (their outputs stay
    zero through every later layer that keeps zeros); a layer that does not
    gets the dense activations of every image back.
    """
    images = x.shape[0]
    live = np.arange(images)
    y = x
    for layer in layers:
        if sparse and layer.keeps_zeros:
            if not scipy.sparse.issparse(y):
                y = scipy.sparse.csr_matrix(y)
            y = layer.sparse(y)
            rows = np.diff(y.indptr) > 0
            if not rows.all():
                y, live = y[rows], live[rows]
        else:
            if scipy.sparse.issparse(y):
                y = y.toarray()
            if len(live) < images:
                full = np.zeros((images, y.shape[1]))
                full[live] = y
                y, live = full, np.arange(images)
            y = layer.dense(y)
    out = np.zeros((images, layers[-1].w.shape[0]))
    out[live] = y.toarray() if scipy.sparse.issparse(y) else y
    return out


def scipy_sparse_times(network, inputs, *, repeats=5, min_seconds=0.2):
    """scipy.sparse on one core, float64: seconds per inference and the outputs.

    Both variants are timed when some layer keeps zeros: ``"sparse
    activations"`` (sparse ``Y`` x CSR ``W`` in those layers, empty rows
    dropped) and ``"dense activations"`` (dense ``Y`` x CSR ``W`` in every
    layer); the faster one is the figure. The inputs are handed over in the
    variant's format (CSR or dense) before the clock starts, as the
    accelerator's time excludes loading them.

    Returns
    -------
    dict
        ``{"seconds", "median_s", "method", "methods_s", "outputs",
        "layers_sparse", "one_core", "rapl"}``.
    """
    layers = [_SparseLayer(layer) for layer in network.layers]
    x = np.ascontiguousarray(np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1))
    variants = {"dense activations": (x, False)}
    if any(layer.keeps_zeros for layer in layers):
        first = scipy.sparse.csr_matrix(x) if layers[0].keeps_zeros else x
        variants["sparse activations"] = (first, True)
    timed = {}
    with one_core() as how:
        for name, (operand, sparse) in variants.items():
            timed[name] = best_seconds(lambda o=operand, s=sparse: _forward(layers, o, sparse=s),
                                       repeats=repeats, min_seconds=min_seconds, max_runs=100)
    method = min(timed, key=lambda name: timed[name]["best"])
    operand, sparse = variants[method]
    return {"seconds": timed[method]["best"] / len(x),
            "median_s": timed[method]["median"] / len(x), "method": method,
            "methods_s": {name: t["best"] / len(x) for name, t in timed.items()},
            "outputs": _forward(layers, operand, sparse=sparse),
            "layers_sparse": sum(layer.keeps_zeros for layer in layers) if sparse else 0,
            "one_core": how, "rapl": timed[method]["rapl"]}


ACCELERATOR_ENERGY_BASIS = ("zeroskip.app.energy's 45 nm per-event energies applied to the "
                            "counters: an ASIC-style event-model projection, not a measurement "
                            "of a board")


def _energy(seconds, rapl, model):
    power = cpu_energy.power_basis(rapl, model=model)
    return cpu_energy.energy_nj(seconds, power["watts"]), power


def cpu_peers(dense_net, network, x, result):
    """The ``cpu`` entry of :func:`zeroskip.app.nn.infer.evaluate`'s result.

    ``dense_net`` is the network as given, ``network`` the one that runs
    (pruned when asked), ``x`` the float inputs, ``result`` the evaluation so
    far (its accelerator time and energy are compared against).
    """
    dense_cpu = onnxruntime_times(dense_net, x)
    pruned_cpu = onnxruntime_times(network, x)
    peer = scipy_sparse_times(network, x)
    reference = network.forward(x)
    acc_s = result["accelerator"]["seconds_per_inference"]
    acc_nj = result["energy_per_inference_nj"]
    model = cpu_energy.cpu_model()
    energies, bases, estimates = {}, {}, []
    for key, seconds, rapl in (
            ("scipy_sparse_1_thread", peer["seconds"], peer["rapl"]),
            ("onnxruntime_dense_1_thread", dense_cpu["1_thread"], dense_cpu["rapl_1_thread"]),
            ("onnxruntime_pruned_1_thread", pruned_cpu["1_thread"],
             pruned_cpu["rapl_1_thread"])):
        energies[key], power = _energy(seconds, rapl, model)
        bases[key] = power["basis"]
        estimates.append(power["estimate"])
    basis = bases["scipy_sparse_1_thread"]
    if len(set(bases.values())) > 1:
        basis = "; ".join(f"{key}: {text}" for key, text in bases.items())
    return {
        "runtime": "onnxruntime (CPUExecutionProvider), float32, dense weights",
        "clock": "wall clock (time.perf_counter), best of repeated runs of the whole batch "
                 "on this machine, divided by the inputs",
        "threads_all": dense_cpu["threads"],
        "one_core": peer["one_core"],
        "dense_1_thread_s": dense_cpu["1_thread"],
        "dense_all_threads_s": dense_cpu["all_threads"],
        "pruned_1_thread_s": pruned_cpu["1_thread"],
        "pruned_all_threads_s": pruned_cpu["all_threads"],
        "scipy_sparse_runtime": f"scipy {scipy.__version__} sparse, float64, one core: CSR "
                                f"weights, {peer['method']} (the faster variant measured)",
        "scipy_sparse_1_thread_s": peer["seconds"],
        "scipy_sparse_median_s": peer["median_s"],
        "scipy_sparse_method": peer["method"],
        "scipy_sparse_methods_s": peer["methods_s"],
        "scipy_sparse_layers_sparse": peer["layers_sparse"],
        "scipy_sparse_top1_agreement": float(np.mean(np.argmax(peer["outputs"], 1)
                                                     == np.argmax(reference, 1))),
        "scipy_sparse_nonzero_rows_equal": bool(np.array_equal(peer["outputs"].any(axis=1),
                                                               reference.any(axis=1))),
        "scipy_sparse_max_abs_diff_vs_float64": float(np.max(np.abs(peer["outputs"]
                                                                    - reference))),
        "accelerator_s": acc_s,
        "speedup_vs_dense_1_thread": dense_cpu["1_thread"] / acc_s,
        "speedup_vs_dense_all_threads": dense_cpu["all_threads"] / acc_s,
        "speedup_vs_pruned_1_thread": pruned_cpu["1_thread"] / acc_s,
        "speedup_vs_pruned_all_threads": pruned_cpu["all_threads"] / acc_s,
        "speedup_vs_scipy_sparse_1_thread": peer["seconds"] / acc_s,
        "cpu_model": model,
        "energy_per_inference_nj": energies,
        "energy_basis": basis,
        "energy_estimate": any(estimates),
        "energy_ratio_vs_accelerator": {key: value / acc_nj if acc_nj else None
                                        for key, value in energies.items()},
        "accelerator_energy_per_inference_nj": acc_nj,
        "accelerator_energy_basis": ACCELERATOR_ENERGY_BASIS,
    }
