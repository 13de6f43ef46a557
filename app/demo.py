"""``zeroskip demo``: the whole flow once, on a shipped matrix and on a pruned network.

Part 1, SpMV: generate the Verilog, compile the SuiteSparse matrix west0067
(shipped in ``app/data``), run it on the ISA model and on the generated
hardware in a simulator, and check both against the bit-exact reference.

Part 2, a network: train scikit-learn's digits MLP (64-64-10, ReLU), prune it
to 90 % gradually (:func:`zeroskip.app.nn.digits.gradual_prune`), export it to
ONNX and read it back with zeroskip's ONNX front end, then run it on the ISA
model over the whole test split and on the simulator over a few images, check
that both give the same integers and the same cycles, and print accuracy,
cycles, time (compute and end to end, with the clock and its source) against
scipy.sparse and onnxruntime on one core, and energy with its basis
(:func:`zeroskip.app.nn.infer.evaluate` measures all of it).

One configuration serves both parts, the board's network configuration
(:func:`zeroskip.app.nn.infer.network_config`: 8-bit values, CSR and CSC), so a
run generates one Verilog and builds at most one simulator; the simulations
use the Verilog the first step wrote (:func:`zeroskip.sim.cocotb_backend.shared_verilog`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from zeroskip.app.nn.infer import DEFAULT_BOARD, network_config
from zeroskip.core.errors import ZeroskipError

__all__ = ["BUILD_DIR", "MATRIX", "SPARSITY", "RTL_IMAGES", "Mismatch", "demo_config", "run",
           "network_part"]

BUILD_DIR = Path("build") / "demo"
#: The SpMV part's matrix, shipped in app/data.
MATRIX = "west0067.mtx"
#: The SpMV part's x: integers in [X_LOW, X_HIGH] drawn with SEED.
X_LOW, X_HIGH, SEED = -8, 7, 0
#: The network's sparsity (gradual pruning) and value width.
SPARSITY = 0.9
VALUE_WIDTH = 8
#: Test images the simulator runs (the ISA model runs them all).
RTL_IMAGES = 8
#: Steps of a run, and what each backend is called in the output.
STEPS = 8
SIMULATORS = ("icarus", "verilator")
BACKEND_NAMES = {"verilator": "Verilator", "icarus": "Icarus Verilog",
                 "pysim": "Amaranth's simulator", "model": "the ISA model"}


class Mismatch(ZeroskipError):
    """Results that differ where they must be equal (the command exits with status 1)."""


class Step:
    """Prints ``[i/n] what ... done (1.2 s): detail`` around a step."""

    def __init__(self, index, what, total=STEPS):
        self.label = f"[{index}/{total}] {what} ..."

    def __enter__(self):
        print(self.label, end=" ", flush=True)
        self.start = time.monotonic()
        self.detail = ""
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            detail = f": {self.detail}" if self.detail else ""
            print(f"done ({self.seconds:.1f} s){detail}", flush=True)
        else:
            print("failed", flush=True)
        return False

    @property
    def seconds(self):
        return time.monotonic() - self.start


def demo_config():
    """The one configuration of both parts: the default board's, for 8-bit networks."""
    return network_config(DEFAULT_BOARD, value_width=VALUE_WIDTH)


def _describe(config):
    return (f"{config.pes} PEs, {config.value_width}-bit values, {config.acc_width}-bit "
            f"accumulators, formats {'+'.join(config.formats)} (fingerprint "
            f"{config.fingerprint})")


def _shared_verilog(backend, config, text):
    """The simulations of ``config`` use ``text`` (no second generation)."""
    if backend not in SIMULATORS:
        return contextlib.nullcontext()   # the model and Amaranth's simulator read no Verilog
    from zeroskip.sim.cocotb_backend import shared_verilog
    return shared_verilog(config, text)


def run(backend, notes=(), *, build_dir=BUILD_DIR, rtl_images=RTL_IMAGES):
    """Run the demo with ``backend`` as the hardware's simulator; return the exit status.

    ``notes`` are printed before the simulator's first step (why a fallback
    was chosen). Raises :class:`Mismatch` when results differ.
    """
    config = demo_config()
    print(f"zeroskip demo: y = A x on a SuiteSparse matrix, then a {100 * SPARSITY:.0f} % "
          f"pruned network through ONNX")
    print(f"  accelerator for both parts: {_describe(config)}: the {DEFAULT_BOARD} "
          f"configuration for {config.value_width}-bit networks, so one Verilog and one "
          f"simulator build serve both")
    notes = list(notes)
    if backend in SIMULATORS and \
            not (Path("build") / "sim" / f"{backend}-{config.fingerprint}").is_dir():
        notes.append(f"a first run compiles the {backend} simulation, which takes a few "
                     f"minutes; later runs reuse it from build/sim/")
    with Step(1, "generating Verilog") as step:
        from zeroskip.hdl.generate import generate
        verilog_path, _ = generate(config, build_dir)
        step.detail = str(verilog_path)
    text = Path(verilog_path).read_text()
    with _shared_verilog(backend, config, text):
        spmv_part(config, backend, notes)
        network_part(config, backend, build_dir=build_dir, rtl_images=rtl_images)
    return 0


# Part 1: SpMV --------------------------------------------------------------------------------

def _matrix():
    from importlib import resources

    from zeroskip.firmware.loader import load_matrix
    with resources.as_file(resources.files("zeroskip.app") / "data" / MATRIX) as path:
        return load_matrix(path)


def _scales(program):
    exponents = getattr(program, "row_exp", None)
    if exponents is None or not len(exponents) or not np.any(exponents):
        return ""
    return (f"row exponents s_i from {int(np.min(exponents))} to {int(np.max(exponents))} "
            f"(A_q = round(A x 2^s_i))")


def spmv_part(config, backend, notes):
    """Steps 2 to 4: compile west0067, run it on the model and on ``backend``, verify."""
    from zeroskip.app.api import Accelerator
    from zeroskip.core.progress import tracker
    name = Path(MATRIX).stem
    matrix = _matrix()
    rows, cols = matrix.shape
    x = np.random.default_rng(SEED).integers(X_LOW, X_HIGH + 1, size=cols, dtype=np.int64)
    print(f"SpMV: y = A x for {name} (SuiteSparse HB/{name}: {rows} x {cols}, {matrix.nnz} "
          f"nonzeros); x: random integers in [{X_LOW}, {X_HIGH}] (seed {SEED})")
    model = Accelerator(config, progress=tracker("running tiles"))
    with Step(2, f"compiling {name}") as step:
        program = model.compile(matrix, x, name=name)
        tiles = len(getattr(program, "tiles", ()))
        scales = _scales(program)
        step.detail = (f"{tiles} tile{'' if tiles == 1 else 's'}, {config.value_width}-bit "
                       f"values" + (f", {scales}" if scales else ""))
    results = {}
    with Step(3, "running on the ISA model") as step:
        results["model"] = model.run(program, x)
        step.detail = f"{results['model'].cycles} cycles"
    for note in notes:
        print(f"      note: {note}")
    with Step(4, f"running the generated hardware on {BACKEND_NAMES[backend]}") as step:
        hardware = Accelerator(config, backend=backend, progress=tracker("running tiles"))
        results[backend] = hardware.run(program, x)
        step.detail = f"{results[backend].cycles} cycles"
    failed = [f"{label}: {result.mismatch}" for label, result in results.items()
              if result.mismatch]
    if failed:
        raise Mismatch("the results differ from the reference: " + "; ".join(failed))
    result = results[backend]
    stats, error = result.stats, result.error
    print(f"verified: y from the model and from {backend} equals the bit-exact reference "
          f"({rows} rows)")
    print(f"  cycles {stats['cycles']} (ideal {stats['ideal_cycles']} = ceil(nnz / pes)), "
          f"utilization {100 * stats['utilization']:.1f} %, MACs {stats['macs']}, "
          f"skipped {stats['skipped']}, gather stalls {stats['gather_stalls']}")
    if error.get("normwise") is None:
        print(f"  against float64: not measured ({error.get('reference')})")
    else:
        print(f"  against float64 at {config.value_width}-bit values: normwise "
              f"{error['normwise']:.2g}, rowwise max {error['rowwise_max']:.2g}, "
              f"{error['rows_over_1pct']} rows off by more than 1 %")
    return results


# Part 2: the network -------------------------------------------------------------------------

def _nonzeros(network):
    weights = [layer.dense_weight() for layer in network.layers]
    return sum(int(np.count_nonzero(w)) for w in weights), sum(w.size for w in weights)


def train_step(index=5):
    """Train the digits MLP and prune it gradually; returns the network and the data.

    Training runs numpy's BLAS on one thread: its small matrices gain nothing
    from more, and on a loaded machine a pool per core makes it ten times slower.
    """
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    from zeroskip.app.nn import digits
    with Step(index, f"training the digits MLP and pruning it to {100 * SPARSITY:.0f} %") \
            as step, threadpool_limits(limits=1):
        x_train, x_test, y_train, y_test = digits.load_data()
        model = digits.train(x_train, y_train)
        pruned, _ = digits.gradual_prune(model, x_train, y_train, SPARSITY)
        dense = digits.to_network(model)
        network = digits.to_network(pruned, name=f"digits-mlp-{100 * SPARSITY:.0f}")
        kept, total = _nonzeros(network)
        step.detail = (f"64-64-10 ReLU on scikit-learn's 8x8 digits, 6 prune-and-retrain steps; "
                       f"{kept} of {total} weights kept")
    data = {"x_train": x_train, "x_test": x_test, "y_train": y_train, "y_test": y_test,
            "dense_float_accuracy": digits.accuracy(dense.forward(x_test), y_test)}
    return network, data


def onnx_step(network, build_dir, index=6):
    """Export ``network`` to ONNX under ``build_dir`` and read it back (the front end)."""
    import onnx

    from zeroskip.app.nn.onnx_io import load_onnx, save_onnx
    with Step(index, "exporting it to ONNX and reading it back") as step:
        path = save_onnx(network, Path(build_dir) / f"{network.name}.onnx")
        loaded = load_onnx(path)
        nodes = onnx.load(str(path)).graph.node
        ops = ", ".join(dict.fromkeys(node.op_type for node in nodes))
        step.detail = (f"{path}: {len(nodes)} nodes ({ops}), read back by zeroskip.app.nn.onnx_io "
                       f"as {len(loaded.layers)} layers")
    return loaded


def calibrated_scales(network, x_train, config):
    """Activation scales calibrated on the training split, one per layer boundary.

    Passed to every run as ``act_frac_bits`` so that the model and the
    simulator run the same integers whatever inputs each is given.
    """
    from zeroskip.app.nn.quantize import quantize_network
    q = quantize_network(network, x_train, value_width=config.value_width,
                         acc_width=config.acc_width)
    return [q.input_frac] + [layer.y_frac if layer.epilogue else None for layer in q.layers]


def _check_same(model, rtl, full, backend, count):
    """Raise :class:`Mismatch` unless the simulator's run equals the model's."""
    if not (rtl["bit_exact_vs_quantized_reference"] and full["bit_exact_vs_quantized_reference"]):
        raise Mismatch(f"digits: the outputs differ from the quantized reference (model on "
                       f"{full['images']} images: {full['bit_exact_vs_quantized_reference']}, "
                       f"{backend}: {rtl['bit_exact_vs_quantized_reference']})")
    ours, theirs = np.asarray(rtl["outputs"]), np.asarray(full["outputs"][:count])
    differ = np.flatnonzero(np.any(ours != theirs, axis=1))
    if differ.size:
        raise Mismatch(f"digits: the {backend} outputs of {differ.size} of {count} images "
                       f"differ from the ISA model's (first: image {differ[0] + 1})")
    cycles = [(row["name"], a["cycles"], row["cycles"])
              for row, a in zip(rtl["layers"], model["layers"]) if row["cycles"] != a["cycles"]]
    if cycles:
        name, predicted, counted = cycles[0]
        raise Mismatch(f"digits: layer {name} took {counted} cycles on {backend}, the ISA "
                       f"model predicts {predicted}")


def network_part(config, backend, *, build_dir=BUILD_DIR, rtl_images=RTL_IMAGES, images=None,
                 first=5):
    """Steps 5 to 8: the pruned digits network through ONNX on the model and on ``backend``.

    ``images`` limits the test split (default: all of it). Returns the
    model's evaluation over the test split (:func:`zeroskip.app.nn.infer.evaluate`).
    """
    from zeroskip.app.nn.infer import evaluate
    network, data = train_step(first)
    loaded = onnx_step(network, build_dir, first + 1)
    x_test, y_test = data["x_test"], data["y_test"]
    if images is not None:
        x_test, y_test = x_test[:images], y_test[:images]
    count = min(rtl_images, len(x_test))
    scales = calibrated_scales(loaded, data["x_train"], config)
    common = dict(config=config, act_frac_bits=scales, build_dir="build")
    with Step(first + 2, f"running the {len(x_test)} test images on the ISA model, timing "
                         f"the CPU peers") as step:
        full = evaluate(loaded, x_test, labels=y_test, backend="model", **common)
        step.detail = f"{full['cycles']} cycles"
    with Step(first + 3, f"running {count} of them on {BACKEND_NAMES[backend]}") as step:
        rtl = evaluate(loaded, x_test[:count], labels=y_test[:count], backend=backend,
                       baseline=False, **common)
        step.detail = f"{rtl['cycles']} cycles"
    model = evaluate(loaded, x_test[:count], labels=y_test[:count], backend="model",
                     baseline=False, **common)
    _check_same(model, rtl, full, backend, count)
    print(f"verified: the {count} images' output integers from {backend} equal the ISA "
          f"model's, bit for bit, and so do the cycles of every layer ({rtl['cycles']}); the "
          f"model's {full['images']} outputs equal the quantized reference")
    print_network_summary(full, data, count=count, backend=backend)
    return full


def print_network_summary(result, data, *, count, backend):
    """The network part's figures: accuracy, cycles, time and energy against the CPU."""
    acc, cpu = result["accelerator"], result["cpu"]
    kept = sum(row["nnz"] for row in result["layers"])
    total = sum(row["shape"][0] * row["shape"][1] for row in result["layers"])
    print(f"digits MLP, {100 * (1 - kept / total):.1f} % of its {total} weights zero, "
          f"int{result['value_width']} (activation scales calibrated on the "
          f"{len(data['x_train'])} training images):")
    print(f"  accuracy {100 * result['accuracy']:.2f} % on the {result['images']} test images "
          f"(float64: pruned {100 * result['float_accuracy']:.2f} %, before pruning "
          f"{100 * data['dense_float_accuracy']:.2f} %)")
    print(f"  cycles per inference {result['cycles_per_inference']:.1f} (dense mode on the "
          f"same array {result['dense_mode_cycles_per_inference']:.1f}, "
          f"{result['speedup_over_dense_mode']:.2f}x fewer)")
    links = acc["data_movement"]["links"]
    print(f"  time per inference at {acc['clock_mhz']:g} MHz: compute "
          f"{1e6 * acc['seconds_per_inference']:.2f} us, end to end "
          f"{1e6 * links['axi4-lite']['end_to_end_seconds_per_inference']:.2f} us over "
          f"AXI4-Lite, {1e6 * links['uart']['end_to_end_seconds_per_inference']:.0f} us over "
          f"the board's UART")
    print(f"    clock: {acc['clock_source']}")
    print(f"  CPU peers on one core of this machine ({cpu['cpu_model']}), in the same run:")
    for label, seconds in ((f"scipy.sparse CSR float64 ({cpu['scipy_sparse_method']})",
                            cpu["scipy_sparse_1_thread_s"]),
                           ("onnxruntime float32, 1 thread", cpu["dense_1_thread_s"])):
        print(f"    {label}: {1e6 * seconds:.2f} us = "
              f"{seconds / acc['seconds_per_inference']:.2f}x the accelerator's compute time, "
              f"{seconds / acc['end_to_end_seconds_per_inference']:.2f}x its end-to-end time")
    energy, ratio = cpu["energy_per_inference_nj"], cpu["energy_ratio_vs_accelerator"]
    print(f"  energy per inference: accelerator {result['energy_per_inference_nj']:.2f} nJ "
          f"compute, {result['energy_per_inference_with_transfers_nj']:.2f} nJ with the host "
          f"transfers (45 nm event-model projection, ASIC-style, not a measurement); CPU "
          f"scipy.sparse {energy['scipy_sparse_1_thread']:.1f} nJ "
          f"({ratio['scipy_sparse_1_thread']:.1f}x the accelerator's compute), onnxruntime "
          f"{energy['onnxruntime_dense_1_thread']:.1f} nJ "
          f"({ratio['onnxruntime_dense_1_thread']:.1f}x)")
    print(f"    CPU power: {cpu['energy_basis']}")
