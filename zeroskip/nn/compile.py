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

    def predicted_dense_cycles(self):
        """Cycles of dense mode for one batch (the ISA model's timing rules)."""
        return sum(int(p.report.get("dense_cycles", 0)) for _, p in self.groups)

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
    for index, layer in enumerate(quantized.layers):
        groups = []
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
                dense_baseline=dense_baseline, split_rows=split_rows, **kwargs)
            groups.append((rows, program))
        layers.append(CompiledLayer(name=layer.name, shape=layer.shape,
                                    nnz=int(layer.weight.nnz), groups=groups))
        x = quantized.layer_reference(index, x)
    return CompiledNetwork(quantized=quantized, config=config, batch=batch, layers=layers)


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
        Inputs run, including the zero padding of the last batch.
    backend : str
    """

    outputs: list
    counters: list
    images: int
    padded: int
    backend: str


def _empty_counters(config):
    counters = dict.fromkeys(COUNTER_NAMES, 0)
    counters["pe_busy"] = [0] * config.pes
    return counters


def _add(total, counters):
    for name in COUNTER_NAMES:
        total[name] += int(counters[name])
    total["pe_busy"] = [a + int(b) for a, b in zip(total["pe_busy"], counters["pe_busy"])]


def _run_model(program, x):
    from zeroskip.firmware.model import run_program
    result = run_program(program, x)
    if result.error is not None:
        raise DeviceError(f"{program.name}: the accelerator stopped with "
                          f"{result.error.code.name} at instruction {result.error.pc} "
                          f"(tile {result.error.tile})", code=result.error.code,
                          pc=result.error.pc)
    return result


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


def run_network(compiled, x_int, *, backend="model", build_dir="build", progress=None):
    """Run ``compiled`` on the quantized inputs ``x_int`` (``(images, inputs)``).

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
    padded = -(-images // batch) * batch
    if padded > images:
        x = np.concatenate([x, np.zeros((padded - images, inputs), dtype=np.int64)])
    outputs, counters = [], []
    for index, layer in enumerate(compiled.layers):
        chunks = [x[i:i + batch] for i in range(0, padded, batch)]
        results = _run_jobs(layer, chunks, backend, build_dir)
        y = np.zeros((padded, layer.shape[0]), dtype=np.int64)
        total = _empty_counters(compiled.config)
        for c, per_group in enumerate(results):
            for (rows, _), result in zip(layer.groups, per_group):
                raw = np.asarray(result.y_raw, dtype=np.int64).reshape(len(rows), batch)
                y[c * batch:(c + 1) * batch, rows] = raw.T
                _add(total, result.counters)
        outputs.append(y[:images])
        counters.append(total)
        x = y       # the epilogue's outputs are the next layer's input integers
        if progress is not None:
            progress(index + 1, len(compiled.layers))
    return NetworkRun(outputs=outputs, counters=counters, images=images, padded=padded,
                      backend=backend)
