"""Network inference end to end: prune, quantize, compile, run, compare, report.

:func:`evaluate` is what ``zeroskip infer``, the examples, the benchmarks and
the report use. It returns a JSON-compatible dict (see :data:`JSON_FIELDS`).
"""

from __future__ import annotations

import numpy as np

from zeroskip.app import energy as energy_model
from zeroskip.app import transfers as transfer_model
from zeroskip.app.nn.api import prune_quantize_compile
from zeroskip.app.nn.compile import check_skip_empty, run_network
from zeroskip.boards.targets import DEFAULT_BOARD  # the board times assume (re-exported)
from zeroskip.core import formatspec
from zeroskip.core.errors import InputError
from zeroskip.core.extmem import describe_ext

__all__ = ["DEFAULT_BOARD", "JSON_FIELDS", "board_facts", "network_config", "evaluate",
           "check_labels"]

#: The note :func:`evaluate` adds when it prunes.
PRUNING_NOTE = ("one-shot magnitude pruning without retraining loses accuracy at high "
                "sparsity; prune gradually with fine-tuning (examples/digits.py) to keep it")
#: What ``energy_model`` of :func:`evaluate` says the energies are.
ENERGY_MODEL = ("zeroskip.app.energy: 45 nm per-event energies (Horowitz ISSCC 2014; "
                "Han et al. NeurIPS 2015) applied to the counters; 'total' is the "
                "accelerator's compute, 'transfers' the host transfers (one 32-bit "
                "DRAM access per word moved); static power and clock tree not "
                "modelled")

#: How the layers chain, layer by layer and ``chained``.
HOST_CHAINED = ("the host copies each layer's epilogue outputs (the next layer's integers) "
                "into X; those transfers are not in the cycles but in data_movement "
                "('activations')")
CHAINED = ("one program per batch: MOVE copies each layer's outputs into X on chip (its "
           "cycles are in the count); the host writes the inputs and reads the last layer's "
           "outputs only")
#: What a resident chained run adds (the board backend always runs so).
RESIDENT = ("; the program (code, weights, biases) is loaded once and stays on chip for "
            "every batch")

JSON_FIELDS = ("outputs", "accuracy", "float_accuracy", "top1_agreement", "images", "layers",
               "cycles_per_inference", "energy_per_inference_nj", "backend")


def board_facts(board=DEFAULT_BOARD):
    """``(BoardInfo, clock in MHz)`` of a board, from :mod:`zeroskip.boards.targets`."""
    from zeroskip.boards.targets import get_board
    info = get_board(board)
    return info, float(info.default_clock_mhz)


def network_config(board=DEFAULT_BOARD, *, value_width=8, nm=None, base=None):
    """The board's accelerator with the network's value width and column mode.

    ``base`` (an AcceleratorConfig) replaces the board's sizing.
    """
    info, _ = board_facts(board)
    config = base if base is not None else info.config
    # Row mode (CSR), column mode (CSC) and, for N:M pruned weights, NM.
    wanted = (formatspec.CSR, formatspec.CSC) + ((formatspec.NM,) if nm is not None else ())
    formats = tuple(dict.fromkeys(tuple(config.formats) + tuple(s.name for s in wanted)))
    if base is not None:
        if nm is not None and formatspec.NM.name not in base.formats:
            raise InputError(f"--nm {nm}: the configuration was generated without the nm "
                             f"format (formats: {', '.join(base.formats)})")
        return base
    return config.replace(value_width=value_width, acc_width=32, formats=formats)


def check_labels(labels, images):
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != images:
        raise InputError(f"labels: shape {labels.shape} does not match the {images} inputs "
                         f"(expected ({images},))")
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
            return labels.astype(np.int64)
        raise InputError(f"labels: dtype {labels.dtype}, expected integer class indices")
    return labels.astype(np.int64)


def _accuracy(scores, labels):
    if labels is None:
        return None
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def _layer_rows(compiled, run, clock_hz):
    rows = []
    for layer, counters, sent, padded, dropped in zip(compiled.layers, run.counters, run.sent,
                                                      run.padded_per_layer, run.dropped):
        out, inp = layer.shape
        busy = sum(counters["pe_busy"])
        cycles = counters["cycles"]
        dense_products = out * inp * run.images
        rows.append({
            "name": layer.name, "shape": [out, inp], "nnz": layer.nnz,
            "density": layer.nnz / (out * inp) if out * inp else 0.0,
            "formats": layer.formats(), "shift_groups": len(layer.groups),
            "cycles": int(cycles),
            # Dense mode runs the same inputs (the dropped ones are dropped there too).
            "dense_mode_cycles": int(layer.predicted_dense_cycles(padded)),
            "inputs_sent": int(sent), "inputs_run": int(padded),
            "inputs_dropped": int(dropped),
            "utilization": busy / (cycles * compiled.config.macs_per_cycle) if cycles else 0.0,
            "macs": int(counters["macs"]),
            "skipped": int(dense_products - counters["macs"]),
            "skipped_stored": int(counters["skipped"]),
            "pe_busy": int(busy), "gather_stalls": int(counters["gather_stalls"]),
            "tokens": int(busy), "rows_out": int(out * padded),
            "lane_balance": layer.lane_balance(),
        })
    return rows


def _chained_rows(compiled, run, clock_hz):
    """The one row of a chained run (its program's counters cover every layer)."""
    counters, program = run.counters[0], run.chained.program
    busy, cycles = sum(counters["pe_busy"]), counters["cycles"]
    products = sum(out * inp for out, inp in (layer.shape for layer in compiled.layers))
    nnz = sum(layer.nnz for layer in compiled.layers)
    return [{
        "name": "chained", "shape": [compiled.layers[-1].shape[0], compiled.layers[0].shape[1]],
        "layers": [layer.name for layer in compiled.layers], "nnz": nnz,
        "density": nnz / products if products else 0.0, "formats": program.formats,
        "shift_groups": sum(len(layer.groups) for layer in compiled.layers),
        "cycles": int(cycles),
        "dense_mode_cycles": int(sum(layer.predicted_dense_cycles(run.padded)
                                     for layer in compiled.layers)),
        "inputs_sent": int(run.images), "inputs_run": int(run.padded), "inputs_dropped": 0,
        "utilization": busy / (cycles * compiled.config.macs_per_cycle) if cycles else 0.0,
        "macs": int(counters["macs"]), "skipped": int(products * run.images - counters["macs"]),
        "skipped_stored": int(counters["skipped"]), "pe_busy": int(busy),
        "gather_stalls": int(counters["gather_stalls"]), "tokens": int(busy),
        "rows_out": int(sum(layer.shape[0] for layer in compiled.layers) * run.padded),
        "dense_products": int(products * run.padded),
        "x_writes": int(sum(layer.shape[1] for layer in compiled.layers) * run.padded),
        "lane_balance": program.lane_balance(),
    }]


def _dropped_summary(run, skip_empty):
    """How many inputs each layer dropped (all-zero activations) and by which rule."""
    rules = {"auto": "inputs whose activations entering a layer are all zero are dropped "
                     "where they provably stay zero (that layer and every later one map a "
                     "zero input to zero in the quantized network)",
             True: "inputs whose activations entering a layer are all zero are dropped at "
                   "every layer (the host fills in the output of a zero input)",
             False: "no input is dropped"}
    return {"total": int(sum(run.dropped)), "per_layer": [int(v) for v in run.dropped],
            "layers_that_drop": int(sum(run.droppable)), "rule": rules[skip_empty]}


def _energy(config, layers, images, *, dense):
    """Energy per inference (nJ) and its breakdown, sparse run or dense mode."""
    totals = {}
    for row in layers:
        out, inp = row["shape"]
        if dense:
            cycles = row["dense_mode_cycles"]
            tokens = row.get("dense_products", out * inp * row["inputs_run"])
        else:
            cycles, tokens = row["cycles"], row["tokens"]
        parts = energy_model.energy(config, cycles=cycles, macs=row["macs"], tokens=tokens,
                                    rows_out=row["rows_out"],
                                    x_writes=row.get("x_writes", inp * row["inputs_run"]))
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value
    return {key: value / images / 1000.0 for key, value in totals.items()}


def projection(config):
    """``None``, or the label of figures only the ISA model makes
    (:func:`zeroskip.boards.record.projection`)."""
    from zeroskip.boards.record import projection as label
    return label(config)


def _clock(info, config):
    """The accelerator's clock for ``config`` on the board (:mod:`zeroskip.boards.record`)."""
    from zeroskip.boards.record import clock_for
    return clock_for(info, config)


def _add_transfer_energy(parts, moved, images):
    """Add the host transfers' energy (nJ per inference) to a compute breakdown, apart."""
    parts["transfers"] = energy_model.transfer_energy(moved.words()) / images / 1000.0
    parts["total_with_transfers"] = parts["total"] + parts["transfers"]


def _accelerator_facts(info, config, clock, *, per_inf, dense_per_inf, batch_cycles, moved,
                       images, batch, backend, chained=False, resident=False,
                       baudrate=None, stream=False):
    """The ``accelerator`` block: the clock and its source, compute and end-to-end times."""
    clock_hz = clock.hz
    compute = per_inf / clock_hz
    if stream:
        rule = (f"the lane images of every layer are written to the external memory once "
                f"for the run; every batch of {batch} inputs then loads each tile's code, "
                f"writes its inputs and reads its outputs, so a per-inference figure is the "
                f"words of the whole run (the one load included) / the {images} inputs")
    elif resident:
        rule = (f"code and weights are loaded once and stay on chip; every batch of {batch} "
                f"inputs writes its inputs, starts, polls and reads its outputs and counters, "
                f"so a per-inference figure is the words of the whole run (the one load "
                f"included) / the {images} inputs")
    else:
        rule = (f"code and weights are loaded before every batch of {batch} inputs (the "
                f"driver loads each tile before it runs it; no layer stays on chip while the "
                f"others run), so a per-inference figure is the words of the whole run / the "
                f"{images} inputs")
    link_rate = {} if baudrate is None else {"baudrate": baudrate}
    movement = transfer_model.data_movement(moved, inferences=images, clock_mhz=clock.mhz,
                                            backend=backend, compute_seconds=compute,
                                            amortisation=rule, **link_rate)
    return {
        "board": info.name, "board_title": info.title, "clock_mhz": clock.mhz,
        "clock_source": clock.source, "clock_routed": clock.routed,
        "pes": config.pes, "products_per_lane": config.products_per_lane,
        "macs_per_cycle": config.macs_per_cycle, "projection": projection(config),
        "formats": list(config.formats),
        "external_memory": describe_ext(config),
        "config_fingerprint": config.fingerprint,
        "seconds_per_inference": compute,
        "end_to_end_seconds_per_inference": movement["end_to_end_seconds_per_inference"],
        "batch_latency_s": batch_cycles / clock_hz,
        "throughput_per_s": clock_hz / per_inf if per_inf else None,
        "dense_mode_seconds_per_inference": dense_per_inf / clock_hz,
        "data_movement": movement,
        "layer_chaining": (CHAINED + (RESIDENT if resident else "")) if chained
                          else HOST_CHAINED,
    }


def evaluate(network, inputs, *, labels=None, prune=None, nm=None, value_width=8,
             backend="model", board=DEFAULT_BOARD, config=None, batch=16, calibrate=1000,
             baseline=True, build_dir="build", act_frac_bits=None, weight_frac_bits=None,
             skip_empty="auto", chained=False, resident=False, port=None, baudrate=None,
             stream=False):
    """Prune, quantize, compile and run ``network`` on ``inputs``; compare and report.

    Parameters
    ----------
    network : Network
    inputs : array, shape (images, ...)
    labels : array of int, optional
    prune : float in [0, 1), optional
        One-shot magnitude pruning of every layer (unstructured).
    nm : str, optional
        One-shot N:M pruning (``"2:4"``).
    value_width : int
        8 or 16.
    backend : str
    board : str
        The board whose clock (its default build clock) and PE count are assumed.
    config : AcceleratorConfig, optional
        Use this accelerator instead of the board's.
    batch : int
        Inputs per run of a layer.
    calibrate : int
        Inputs used to calibrate the activation scales (the first ones).
    baseline : bool
        Measure the CPU peers (onnxruntime and scipy.sparse, see
        :func:`zeroskip.app.nn.baseline.cpu_peers`).
    act_frac_bits, weight_frac_bits
        Force scales (see :func:`~zeroskip.app.nn.quantize.quantize_network`).
    skip_empty : {"auto", True, False}
        Send no input whose activations entering a layer are all zero (see
        :func:`~zeroskip.app.nn.compile.run_network`): ``"auto"`` (default) where
        they provably stay zero, ``True`` everywhere, ``False`` never. Dense
        mode gets the same inputs; ``layers[i].inputs_dropped`` and
        ``inputs_dropped`` say how many were dropped.
    chained : bool
        Run the network as one program per batch, its layers chained on chip
        (see :func:`~zeroskip.app.nn.compile.run_network`); ``layers`` is then
        one row, ``chained``, and ``skip_empty`` drops nothing.
    resident : bool
        With ``chained``: load the program once and keep it on chip for every
        batch (see :func:`~zeroskip.app.nn.compile.run_network`).
    port, baudrate
        The board's serial device and link rate: ``backend="board"`` runs the
        network on the board, chained and resident. Its bitstream must be of
        this configuration (its identity and fingerprint are checked before
        anything is loaded).
    stream : bool
        Stream every layer's tiles from the external memory of ``config``
        (:func:`~zeroskip.app.nn.compile.compile_network`; the ISA model
        only): the cycles include the loads not hidden behind compute, the
        lane images are written once for the run
        (``accelerator.data_movement.stream``).

    Returns
    -------
    dict
    """
    x, labels, skip_empty = _check_arguments(network, inputs, labels, prune, nm, skip_empty)
    info, _ = board_facts(board)
    config = network_config(board, value_width=value_width, nm=nm, base=config)
    clock = _clock(info, config)
    if stream and not config.ext_words:
        raise InputError("stream=True needs an external memory (ext_words > 0)")
    pruned, compiled, x_int = prune_quantize_compile(
        network, config, x[:calibrate], inputs=x, prune=prune, nm=nm, batch=batch,
        act_frac_bits=act_frac_bits, weight_frac_bits=weight_frac_bits, stream=stream)
    notes = [] if prune is None and nm is None else [PRUNING_NOTE]
    run = run_network(compiled, x_int, backend=backend, build_dir=build_dir,
                      skip_empty=skip_empty, chained=chained, resident=resident, port=port,
                      baudrate=baudrate)
    result = {
        "network": pruned.name, "backend": backend, "images": int(len(x)),
        "padded_images": int(run.padded), "batch": compiled.batch,
        "skip_empty": skip_empty,
        "inputs_dropped": _dropped_summary(run, skip_empty),
        "value_width": config.value_width, "acc_width": config.acc_width,
        "pruning": ({"sparsity": prune} if prune is not None else {"nm": nm} if nm is not None
                    else "none (zeros already in the model are skipped)"),
        **_accuracy_fields(network, pruned, compiled.quantized, x, x_int, run, labels),
        **_cost_fields(compiled, run, info, clock, backend, baudrate=baudrate),
        "notes": notes,
    }
    if baseline:
        from zeroskip.app.nn.baseline import cpu_peers
        result["cpu"] = cpu_peers(network, pruned, x, result)
    return result


def _check_arguments(network, inputs, labels, prune, nm, skip_empty):
    """``(x, labels, skip_empty)`` of :func:`evaluate`, checked."""
    x = network.check_inputs(inputs)
    skip_empty = check_skip_empty(skip_empty)
    if labels is not None:
        labels = check_labels(labels, len(x))
    if prune is not None and nm is not None:
        raise InputError("--prune and --nm exclude each other")
    return x, labels, skip_empty


def _accuracy_fields(dense_net, network, q, x, x_int, run, labels):
    """The outputs against the labels, the float networks and the quantized reference."""
    reference = q.reference(x_int)
    # A chained run reads back the last layer alone (the others are None).
    exact = all(np.array_equal(a, b) for a, b in zip(reference, run.outputs) if b is not None)
    outputs = q.layers[-1].dequantize(run.outputs[-1])
    float_pruned = network.forward(x)
    float_dense = dense_net.forward(x)
    return {
        "outputs": outputs.tolist(),
        "accuracy": _accuracy(outputs, labels),
        "float_accuracy": _accuracy(float_dense, labels),
        "float_pruned_accuracy": _accuracy(float_pruned, labels),
        "quantized_reference_accuracy": _accuracy(q.layers[-1].dequantize(reference[-1]),
                                                  labels),
        "top1_agreement": float(np.mean(np.argmax(outputs, 1) == np.argmax(float_pruned, 1))),
        "top1_agreement_dense_float": float(np.mean(np.argmax(outputs, 1)
                                                    == np.argmax(float_dense, 1))),
        "bit_exact_vs_quantized_reference": bool(exact),
        "max_abs_error_vs_float64": float(np.max(np.abs(outputs - float_pruned))),
        "scales": q.scales(),
    }


def _cost_fields(compiled, run, info, clock, backend, *, baudrate=None):
    """Cycles, energy and the accelerator's times per layer and per inference."""
    config = compiled.config
    rows = _chained_rows if run.chained is not None else _layer_rows
    layers = rows(compiled, run, clock.mhz * 1e6)
    cycles = sum(row["cycles"] for row in layers)
    dense_cycles = sum(row["dense_mode_cycles"] for row in layers)
    # Per inference: over the real inputs (the padding of a last batch is paid for).
    per_inf = cycles / run.images
    dense_per_inf = dense_cycles / run.images
    e_sparse = _energy(config, layers, run.images, dense=False)
    e_dense = _energy(config, layers, run.images, dense=True)
    moved = transfer_model.count_network(compiled, run)
    _add_transfer_energy(e_sparse, moved, run.images)
    accelerator = _accelerator_facts(info, config, clock, per_inf=per_inf,
                                     dense_per_inf=dense_per_inf,
                                     batch_cycles=per_inf * compiled.batch, moved=moved,
                                     images=run.images, batch=compiled.batch, backend=backend,
                                     chained=run.chained is not None, resident=run.resident,
                                     baudrate=baudrate, stream=compiled.stream)
    if run.resident:
        accelerator["data_movement"]["resident"] = _resident_words(compiled, run)
    if compiled.stream:
        accelerator["data_movement"]["stream"] = _streamed_words(compiled, run)
    return {
        "layers": layers,
        "cycles": int(cycles),
        "cycles_per_inference": per_inf,
        "dense_mode_cycles_per_inference": dense_per_inf,
        "speedup_over_dense_mode": dense_per_inf / per_inf if per_inf else None,
        "energy_per_inference_nj": e_sparse["total"],
        "energy_breakdown_nj": e_sparse,
        "dense_mode_energy_per_inference_nj": e_dense["total"],
        "dense_mode_energy_breakdown_nj": e_dense,
        "energy_per_inference_with_transfers_nj": e_sparse["total_with_transfers"],
        "energy_model": ENERGY_MODEL,
        "accelerator": accelerator,
    }


def _streamed_words(compiled, run):
    """The words of a streamed run's one external-memory load and of its batches, per
    kind (:func:`zeroskip.app.transfers.count_streamed`)."""
    load, batches = transfer_model.count_streamed(compiled, run)
    return {"batches": run.padded // compiled.batch, "ext_words": int(len(compiled.ext)),
            "load_words": {kind: load.words(kind) for kind in load.kinds()},
            "batch_words": {kind: batches.words(kind) for kind in batches.kinds()}}


def _resident_words(compiled, run):
    """The words of a resident run's one load and of each batch, per kind
    (:func:`zeroskip.app.transfers.count_resident`)."""
    load, batch = transfer_model.count_resident(run.chained.program)
    return {"batches": run.padded // compiled.batch,
            "load_words": {kind: load.words(kind) for kind in load.kinds()},
            "words_per_batch": {kind: batch.words(kind) for kind in batch.kinds()}}
