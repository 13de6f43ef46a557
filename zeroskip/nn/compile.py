"""Whole-network compilation and batched inference on any backend.

:func:`compile_network` turns a :class:`~zeroskip.nn.quantize.QuantizedNetwork`
into one :class:`CompiledNetwork`: per layer, one firmware
:class:`~zeroskip.firmware.program.Program` per epilogue shift (rows whose
per-channel weight scales give the same ``SET_EPI`` shift share one), each
compiled for a batch of ``batch`` inputs (the right-hand matrix kernels; the
cost model picks CSR, or column mode CSC where the sample activations' zeros
pay, per row band and input).

How layers are chained: the ISA has no instruction that moves a layer's
output words into the X buffer, so the host driver reads the epilogue's
outputs (already the next layer's integers: shifted, rounded, ReLU'd,
clamped and saturated by the hardware) and writes them to X for the next
layer, bit for bit. Those host transfers are not counted in the cycles.

:func:`run_network` runs the compiled network on a backend in batches and
returns every layer's output integers and counters.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zeroskip.config import AcceleratorConfig
from zeroskip.errors import DeviceError, InputError
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.sim.driver import COUNTER_NAMES

__all__ = ["CompiledLayer", "CompiledNetwork", "NetworkRun", "compile_network", "run_network"]


@dataclasses.dataclass
class CompiledLayer:
    """One layer: ``(rows, Program)`` per epilogue shift group."""

    name: str
    shape: tuple
    nnz: int
    groups: list

    #: Per shift group, dense mode's cycles for one input (see :func:`dense_mode_cycles`).
    dense_cycles: list = dataclasses.field(default_factory=list)

    def predicted_dense_cycles(self, inputs=1):
        """Cycles of dense mode for ``inputs`` inputs (the ISA model's timing rules)."""
        return sum(self.dense_cycles) * inputs

    def formats(self):
        names = []
        for _, program in self.groups:
            for name in program.formats:
                if name not in names:
                    names.append(name)
        return names


@dataclasses.dataclass
class CompiledNetwork:
    """A whole network compiled for one configuration and batch size.

    Attributes
    ----------
    quantized : QuantizedNetwork
    config : AcceleratorConfig
    batch : int
        Inputs per run of a layer's programs (the last batch is padded).
    layers : list of CompiledLayer
    """

    quantized: object
    config: AcceleratorConfig
    batch: int
    layers: list

    def programs(self):
        return [program for layer in self.layers for _, program in layer.groups]

    def tiles(self):
        return sum(len(p.tiles) for p in self.programs())


def compile_network(quantized, config, sample_int, *, batch=None, fmt="auto",
                    split_rows="auto", dense_baseline=True):
    """Compile every layer of ``quantized`` for ``config``.

    Parameters
    ----------
    quantized : QuantizedNetwork
    config : AcceleratorConfig
        Its ``value_width`` and ``acc_width`` must be the network's.
    sample_int : array of int, shape (n, inputs)
        Sample quantized inputs: their activations drive the cost model
        (column mode where activations are sparse).
    batch : int, optional
        Inputs per run (default ``min(n, 16)``).
    fmt, split_rows
        As for :func:`~zeroskip.firmware.compiler.compile_kernel`.
    dense_baseline : bool
        Also predict the cycles of dense mode per layer.

    Returns
    -------
    CompiledNetwork
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    if config.value_width != quantized.value_width or config.acc_width != quantized.acc_width:
        raise InputError(f"the network is quantized to {quantized.value_width}-bit values and "
                         f"{quantized.acc_width}-bit accumulators but the accelerator has "
                         f"{config.value_width} and {config.acc_width}")
    sample_int = np.asarray(sample_int, dtype=np.int64)
    if batch is None:
        batch = min(len(sample_int), 16)
    if not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, not {batch!r}")
    sample = sample_int[:batch]
    if len(sample) < batch:
        sample = np.concatenate([sample, np.zeros((batch - len(sample), sample.shape[1]),
                                                  dtype=np.int64)])
    layers = []
    x = sample
    cache = {}
    for index, layer in enumerate(quantized.layers):
        groups, dense = [], []
        for shift, rows in layer.groups():
            bias = None if layer.bias is None else layer.bias[rows]
            kwargs = {}
            if layer.epilogue:
                kwargs = dict(shift=shift, relu=layer.relu, epilogue=True,
                              clamp=layer.clamp if layer.clamp is not None else None)
            program = compile_kernel(
                layer.weight[rows], config, x=x.T, fmt=fmt, bias=bias,
                a_frac_bits=int(layer.w_frac[rows].max()), x_frac_bits=layer.x_frac,
                name=f"{layer.name}[shift {shift}]" if layer.epilogue else layer.name,
                dense_baseline=False, split_rows=split_rows, **kwargs)
            groups.append((rows, program))
            if dense_baseline:
                dense.append(dense_mode_cycles(len(rows), layer.shape[1], config,
                                               bias=bias is not None, cache=cache, **kwargs))
        layers.append(CompiledLayer(name=layer.name, shape=layer.shape,
                                    nnz=int(layer.weight.nnz), groups=groups,
                                    dense_cycles=dense))
        x = quantized.layer_reference(index, x)
    return CompiledNetwork(quantized=quantized, config=config, batch=batch, layers=layers)


def dense_mode_cycles(rows, cols, config, *, bias=False, cache=None, **epilogue):
    """Cycles of one input through a ``rows x cols`` layer forced into dense mode.

    Dense mode streams every entry whatever its value, so its cycles depend
    only on the shape and the epilogue: the ISA model's timing rules predict
    them once per shape (``cache`` keeps them).
    """
    key = (rows, cols, bias, tuple(sorted(epilogue.items())))
    if cache is not None and key in cache:
        return cache[key]
    import scipy.sparse
    probe = scipy.sparse.csr_matrix(([1], ([0], [0])), shape=(rows, cols), dtype=np.int64)
    program = compile_kernel(probe, config, bias=np.zeros(rows, dtype=np.int64) if bias else None,
                             dense_baseline=True, split_rows=False, name="dense probe",
                             **epilogue)
    cycles = int(program.report["dense_cycles"])
    if cache is not None:
        cache[key] = cycles
    return cycles


@dataclasses.dataclass
class NetworkRun:
    """What :func:`run_network` produced.

    Attributes
    ----------
    outputs : list of numpy.ndarray of int64
        Per layer, its output integers ``(images, outputs)``.
    counters : list of dict
        Per layer, the counters summed over batches and shift groups
        (``pe_busy`` a list per PE).
    images : int
    padded : int
        Inputs the first layer ran, including the zero padding of the last batch.
    backend : str
    sent, padded_per_layer : list of int
        Per layer, the inputs sent (all of them unless ``skip_empty``) and
        the inputs run including padding.
    """

    outputs: list
    counters: list
    images: int
    padded: int
    backend: str
    sent: list = dataclasses.field(default_factory=list)
    padded_per_layer: list = dataclasses.field(default_factory=list)


def _empty_counters(config):
    counters = dict.fromkeys(COUNTER_NAMES, 0)
    counters["pe_busy"] = [0] * config.pes
    return counters


def _add(total, counters):
    for name in COUNTER_NAMES:
        total[name] += int(counters[name])
    total["pe_busy"] = [a + int(b) for a, b in zip(total["pe_busy"], counters["pe_busy"])]


def _run_model(program, x):
    from zeroskip.sim.backends import run_model
    try:
        return run_model(program, x)
    except DeviceError as error:
        raise DeviceError(f"{program.name}: {error}", code=error.code, pc=error.pc,
                          tile=error.tile, result=error.result) from None


def _run_jobs(layer, chunks, backend, build_dir):
    """Results ``[chunk][group]`` of one layer."""
    if backend == "model":
        return [[_run_model(program, chunk.T) for _, program in layer.groups]
                for chunk in chunks]
    from zeroskip.sim.backends import Job, run_many
    jobs = [Job(program, chunk.T) for chunk in chunks for _, program in layer.groups]
    results = run_many(jobs, backend=backend, build_dir=build_dir)
    for result in results:
        if isinstance(result, Exception):
            raise result
    per = len(layer.groups)
    return [results[i * per:(i + 1) * per] for i in range(len(chunks))]


def run_network(compiled, x_int, *, backend="model", build_dir="build", progress=None,
                skip_empty=False):
    """Run ``compiled`` on the quantized inputs ``x_int`` (``(images, inputs)``).

    Parameters
    ----------
    skip_empty : bool
        Do not send an input whose activations entering a layer are all zero
        (the Graph Challenge's sparse ``Y`` drops such rows): the host fills
        in the layer's output for a zero input (the epilogue applied to the
        bias alone, from the quantized reference). Those inputs add no
        cycles; :attr:`NetworkRun.sent` counts the inputs each layer ran.

    Returns
    -------
    NetworkRun

    Raises
    ------
    InputError
        On inputs of the wrong shape.
    DeviceError
        When the accelerator reports an error.
    """
    x = np.asarray(x_int, dtype=np.int64)
    inputs = compiled.layers[0].shape[1]
    if x.ndim != 2 or x.shape[1] != inputs:
        raise InputError(f"inputs have shape {x.shape} but the network takes (images, {inputs})")
    images, batch = len(x), compiled.batch
    outputs, counters, sent_counts, padded_counts = [], [], [], []
    for index, layer in enumerate(compiled.layers):
        live = np.flatnonzero(x.any(axis=1)) if skip_empty else np.arange(images)
        count = len(live)
        padded = -(-count // batch) * batch
        xs = np.zeros((padded, x.shape[1]), dtype=np.int64)
        xs[:count] = x[live]
        chunks = [xs[i:i + batch] for i in range(0, padded, batch)]
        results = _run_jobs(layer, chunks, backend, build_dir) if chunks else []
        y = np.zeros((padded, layer.shape[0]), dtype=np.int64)
        total = _empty_counters(compiled.config)
        for c, per_group in enumerate(results):
            for (rows, _), result in zip(layer.groups, per_group):
                raw = np.asarray(result.y_raw, dtype=np.int64).reshape(len(rows), batch)
                y[c * batch:(c + 1) * batch, rows] = raw.T
                _add(total, result.counters)
        if count < images:
            zero = compiled.quantized.layer_reference(index, np.zeros((1, x.shape[1]),
                                                                      dtype=np.int64))
            full = np.repeat(zero, images, axis=0)
            full[live] = y[:count]
        else:
            full = y[:images]
        outputs.append(full)
        counters.append(total)
        sent_counts.append(count)
        padded_counts.append(padded)
        x = full    # the epilogue's outputs are the next layer's input integers
        if progress is not None:
            progress(index + 1, len(compiled.layers))
    return NetworkRun(outputs=outputs, counters=counters, images=images,
                      padded=padded_counts[0] if padded_counts else 0, backend=backend,
                      sent=sent_counts, padded_per_layer=padded_counts)
