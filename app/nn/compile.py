"""Whole-network compilation and batched inference on any backend.

:func:`compile_network` turns a :class:`~zeroskip.app.nn.quantize.QuantizedNetwork`
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

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import DeviceError, InputError
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.firmware.cycles import check_dense_cycles
from zeroskip.firmware.program import lane_balance
from zeroskip.sim.driver import COUNTER_NAMES

__all__ = ["CompiledLayer", "CompiledNetwork", "NetworkRun", "SKIP_EMPTY", "check_skip_empty",
           "compile_group", "compile_network", "epilogue_settings",
           "dense_mode_cycles", "drop_plan", "run_network", "zero_stays_zero"]


@dataclasses.dataclass
class CompiledLayer:
    """One layer: ``(rows, Program)`` per epilogue shift group."""

    name: str
    shape: tuple
    nnz: int
    groups: list

    #: Per shift group, dense mode's cycles for one batch of :attr:`dense_batch`
    #: inputs (see :func:`dense_mode_cycles`).
    dense_cycles: list = dataclasses.field(default_factory=list)

    #: Inputs per run the dense-mode cycles are counted for (the network's batch).
    dense_batch: int = 1

    def predicted_dense_cycles(self, inputs=1):
        """Cycles of this layer forced into dense mode for ``inputs`` inputs: every row,
        column and tile, run in batches of :attr:`dense_batch` (the last padded, as
        the sparse run pads it), by the ISA model's timing rules; checked against
        :func:`~zeroskip.firmware.cycles.check_dense_cycles`."""
        if not self.groups:
            return 0
        batches = -(-int(inputs) // self.dense_batch)
        rows, cols = self.shape
        return check_dense_cycles(sum(self.dense_cycles) * batches, rows, cols,
                                  batches * self.dense_batch, self.groups[0][1].config,
                                  what=f"{self.name} in dense mode")

    def lane_balance(self):
        """The lanes' work in one run of the layer's programs and its balance (see
        :meth:`~zeroskip.firmware.program.Program.lane_balance`): ``lane_work``
        summed over the shift groups' programs, ``balance`` (the busiest lane's
        work / the mean, 1.0 = even) and ``tiles``, each program's tiles in
        order with the index of its shift ``group``."""
        total, tiles = None, []
        for group, (_, program) in enumerate(self.groups):
            balance = program.lane_balance()
            work = np.asarray(balance["lane_work"], dtype=np.int64)
            total = work if total is None else total + work
            tiles += [{"group": group, **tile} for tile in balance["tiles"]]
        total = np.zeros(0, dtype=np.int64) if total is None else total
        return {"lane_work": [int(v) for v in total], "balance": lane_balance(total),
                "tiles": tiles}

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
    #: With ``stream``: the external memory's one image, every layer's lane images
    #: side by side (each program's ``LOAD`` reads its own place in it).
    ext: np.ndarray = None

    @property
    def stream(self):
        """Whether the layers stream their tiles from the external memory."""
        return self.ext is not None

    def programs(self):
        return [program for layer in self.layers for _, program in layer.groups]

    def tiles(self):
        return sum(len(p.tiles) for p in self.programs())


def compile_network(quantized, config, sample_int, *, batch=None, fmt="auto",
                    split_rows="auto", dense_baseline=True, stream=False):
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
    stream : bool
        Stream every layer's tiles from the external memory of ``config``
        (``compile_kernel(..., stream=True)``, double-buffered): all the
        layers' lane images share one external-memory image
        (:attr:`CompiledNetwork.ext`,
        :func:`~zeroskip.firmware.compiler.stream.share_external_memory`),
        which the host writes once for the whole run; each batch then moves
        code, activations and results only.

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
            kwargs = epilogue_settings(layer, shift)
            program = compile_group(layer, shift, rows, config, weight=layer.weight[rows],
                                    x=x.T, fmt=fmt, split_rows=split_rows, stream=stream)
            groups.append((rows, program))
            if dense_baseline:
                dense.append(dense_mode_cycles(len(rows), layer.shape[1], config, batch=batch,
                                               bias=bias is not None, cache=cache, **kwargs))
        layers.append(CompiledLayer(name=layer.name, shape=layer.shape,
                                    nnz=int(layer.weight.nnz), groups=groups,
                                    dense_cycles=dense, dense_batch=batch))
        x = quantized.layer_reference(index, x)
    compiled = CompiledNetwork(quantized=quantized, config=config, batch=batch, layers=layers)
    return _share_external_memory(compiled) if stream else compiled


def _share_external_memory(compiled):
    """``compiled`` (streamed) with every program's images at their place in one image."""
    from zeroskip.firmware.compiler.stream import share_external_memory
    programs, ext = share_external_memory(compiled.programs(), compiled.config,
                                          name="the network")
    programs = iter(programs)
    for layer in compiled.layers:
        layer.groups = [(rows, next(programs)) for rows, _ in layer.groups]
    compiled.ext = ext
    return compiled


def epilogue_settings(layer, shift):
    """The compiler's epilogue keywords of ``layer``'s shift group ``shift``."""
    if not layer.epilogue:
        return {}
    return dict(shift=shift, relu=layer.relu, epilogue=True,
                clamp=layer.clamp if layer.clamp is not None else None)


def compile_group(layer, shift, rows, config, *, weight, x, fmt, split_rows, stream=False):
    """The program of ``layer``'s rows ``rows`` (its shift group ``shift``): ``weight``
    (those rows, their columns as the program reads them) times the operand ``x``
    (a sample, or ``None`` for a vector with every activation nonzero)."""
    return compile_kernel(
        weight, config, x=x, fmt=fmt, bias=None if layer.bias is None else layer.bias[rows],
        a_frac_bits=int(layer.w_frac[rows].max()), x_frac_bits=layer.x_frac,
        name=f"{layer.name}[shift {shift}]" if layer.epilogue else layer.name,
        dense_baseline=False, split_rows=split_rows, stream=stream,
        **epilogue_settings(layer, shift))


def dense_mode_cycles(rows, cols, config, *, batch=1, bias=False, cache=None, **epilogue):
    """Cycles of one batch of ``batch`` inputs through a ``rows x cols`` layer forced
    into dense mode (the matrix kernel, ``batch`` right-hand columns).

    Dense mode streams every entry of every row whatever its value, so its
    cycles depend only on the shape, the batch and the epilogue: the
    compiler's dense prediction (the ISA model's timing rules over every tile
    ``fmt="dense"`` emits for the full matrix) gives them once per shape
    (``cache`` keeps them). Never below ``rows x cols x batch /
    config.macs_per_cycle`` (checked).
    """
    key = (rows, cols, batch, bias, tuple(sorted(epilogue.items())))
    if cache is not None and key in cache:
        return cache[key]
    import scipy.sparse
    probe = scipy.sparse.csr_matrix(([1], ([0], [0])), shape=(rows, cols), dtype=np.int64)
    program = compile_kernel(probe, config, bias=np.zeros(rows, dtype=np.int64) if bias else None,
                             kernel="spmm", rhs_columns=batch, dense_baseline=True,
                             split_rows=False, name="dense probe", **epilogue)
    cycles = check_dense_cycles(program.report["dense_cycles"], rows, cols, batch, config)
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
        Per layer, the inputs sent (those not dropped) and the inputs run
        including padding.
    dropped : list of int
        Per layer, the inputs not sent because their activations entering
        it were all zero (see ``skip_empty`` of :func:`run_network`).
    droppable : list of bool
        Per layer, whether it dropped all-zero inputs.
    """

    outputs: list
    counters: list
    images: int
    padded: int
    backend: str
    sent: list = dataclasses.field(default_factory=list)
    padded_per_layer: list = dataclasses.field(default_factory=list)
    dropped: list = dataclasses.field(default_factory=list)
    droppable: list = dataclasses.field(default_factory=list)
    #: With ``chained``: the :class:`~zeroskip.app.nn.chain.ChainedNetwork` that ran
    #: (``outputs`` then holds the last layer's alone, the others ``None``, and
    #: ``counters`` one entry: the chained program's, summed over batches).
    chained: object = None
    #: Whether the chained program was loaded once and kept on chip for every batch
    #: (a :class:`~zeroskip.sim.driver.Session`) rather than loaded for each.
    resident: bool = False


#: The values ``skip_empty`` takes (``"auto"``: where provably safe).
SKIP_EMPTY = ("auto", True, False)


def zero_stays_zero(quantized):
    """Per layer, whether an input whose activations entering it are all zero
    provably stays zero to the network's output: this layer and every later one
    map a zero input to zero (a bias that is not positive through a ReLU or a
    clamp at 0), decided exactly with the quantized layers."""
    maps_zero = [not quantized.layer_reference(index, np.zeros((1, layer.shape[1]),
                                                               dtype=np.int64)).any()
                 for index, layer in enumerate(quantized.layers)]
    safe, stays = [], True
    for value in reversed(maps_zero):
        stays = stays and value
        safe.append(stays)
    return safe[::-1]


def drop_plan(quantized, skip_empty):
    """Per layer, whether :func:`run_network` drops the all-zero inputs there.

    ``"auto"``: where they provably stay zero (:func:`zero_stays_zero`);
    ``True``: at every layer (the host fills in a zero input's output, bias
    and epilogue included, from the quantized reference); ``False``: nowhere.
    """
    skip_empty = check_skip_empty(skip_empty)
    if skip_empty == "auto":
        return zero_stays_zero(quantized)
    return [skip_empty] * len(quantized.layers)


def check_skip_empty(skip_empty):
    """``skip_empty`` if it is one of :data:`SKIP_EMPTY` (a bool as ``bool``)."""
    if isinstance(skip_empty, str) and skip_empty == "auto":
        return skip_empty
    if not isinstance(skip_empty, (bool, np.bool_)):
        raise InputError(f"skip_empty must be 'auto', True or False, not {skip_empty!r}")
    return bool(skip_empty)


def _empty_counters(config):
    counters = dict.fromkeys(COUNTER_NAMES, 0)
    counters["pe_busy"] = [0] * config.pes
    return counters


def _add(total, counters):
    for name in COUNTER_NAMES:
        total[name] += int(counters[name])
    total["pe_busy"] = [a + int(b) for a, b in zip(total["pe_busy"], counters["pe_busy"])]


def _run_model(program, x, machine=None):
    from zeroskip.sim.backends import run_model
    try:
        return run_model(program, x, machine=machine)
    except DeviceError as error:
        raise DeviceError(f"{program.name}: {error}", code=error.code, pc=error.pc,
                          tile=error.tile, result=error.result) from None


def _run_jobs(layer, chunks, backend, build_dir, machine=None):
    """Results ``[chunk][group]`` of one layer (on ``machine``, a streamed network's
    model whose external memory holds the network's image already, if given)."""
    if machine is not None:
        # The image is written once for the run: no program writes it again.
        programs = [dataclasses.replace(program, ext=None) for _, program in layer.groups]
        return [[_run_model(program, chunk.T, machine) for program in programs]
                for chunk in chunks]
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
                skip_empty="auto", chained=False, resident=False, port=None, baudrate=None):
    """Run ``compiled`` on the quantized inputs ``x_int`` (``(images, inputs)``).

    Parameters
    ----------
    backend : str
        One of :data:`~zeroskip.sim.backends.ALL_BACKENDS`; ``"board"`` (the
        board at ``port``, over its UART bridge at ``baudrate``) implies
        ``chained`` and ``resident``.
    chained : bool
        Run the network as one program per batch, its layers chained on chip
        with ``MOVE`` (:func:`~zeroskip.app.nn.chain.chain_network`): the host
        writes the inputs and reads the last layer's outputs only. Every input
        runs (``skip_empty`` must not be ``True``).
    resident : bool
        With ``chained``: load the program (code, lane images, biases) once and
        keep it on chip (:class:`~zeroskip.sim.driver.Session`); each batch then
        writes X, starts, polls and reads the counters and outputs only.
    port, baudrate
        The board's serial device and link rate (``backend="board"`` only).
    skip_empty : {"auto", True, False}
        Do not send an input whose activations entering a layer are all zero
        (the Graph Challenge's sparse ``Y`` drops such rows): the host fills
        in the layer's output for a zero input (the epilogue applied to the
        bias alone, from the quantized reference). Those inputs add no
        cycles; :attr:`NetworkRun.sent` counts the inputs each layer ran and
        :attr:`NetworkRun.dropped` the others. ``"auto"`` (default) drops
        them only where they provably stay zero, so the host fills in zeros
        (:func:`zero_stays_zero`); ``True`` at every layer; ``False`` never.

    A streamed network (``compiled.stream``) runs layer by layer on the ISA
    model only: one model for the whole run, its external memory written once
    with :attr:`CompiledNetwork.ext`, then every program on it without
    writing the image again.

    Returns
    -------
    NetworkRun

    Raises
    ------
    InputError
        On inputs of the wrong shape; a streamed network chained or on
        another backend.
    DeviceError
        When the accelerator reports an error.
    """
    x = np.asarray(x_int, dtype=np.int64)
    inputs = compiled.layers[0].shape[1]
    if x.ndim != 2 or x.shape[1] != inputs:
        raise InputError(f"inputs have shape {x.shape} but the network takes (images, {inputs})")
    board = _board_options(backend, port, baudrate)
    if resident and not chained and backend != "board":
        raise InputError("resident=True needs chained=True: only a chained network is one "
                         "program that stays on chip")
    if compiled.stream and (chained or board is not None):
        raise InputError("a streamed network runs layer by layer: a chained program moves "
                         "its layers with MOVE, which a streamed program holds none of")
    if chained or board is not None:
        return _run_chained(compiled, x, backend=backend, build_dir=build_dir,
                            progress=progress, skip_empty=skip_empty,
                            resident=resident or board is not None, board=board)
    machine = _streaming_machine(compiled, backend)
    droppable = drop_plan(compiled.quantized, skip_empty)
    images, batch = len(x), compiled.batch
    outputs, counters, sent_counts, padded_counts = [], [], [], []
    for index, layer in enumerate(compiled.layers):
        live = np.flatnonzero(x.any(axis=1)) if droppable[index] else np.arange(images)
        count = len(live)
        padded = -(-count // batch) * batch
        xs = np.zeros((padded, x.shape[1]), dtype=np.int64)
        xs[:count] = x[live]
        chunks = [xs[i:i + batch] for i in range(0, padded, batch)]
        results = _run_jobs(layer, chunks, backend, build_dir, machine) if chunks else []
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
                      sent=sent_counts, padded_per_layer=padded_counts,
                      dropped=[images - count for count in sent_counts], droppable=droppable)


def _streaming_machine(compiled, backend):
    """``None``, or for a streamed network the ISA model it runs on, its external
    memory written once with the network's image (:attr:`CompiledNetwork.ext`)."""
    if not compiled.stream:
        return None
    if backend != "model":
        raise InputError(f"a streamed network runs on the ISA model only (the generated "
                         f"hardware has no external-memory port yet), not on {backend!r}")
    import asyncio

    from zeroskip.firmware.model import Machine
    from zeroskip.sim.buses import ModelBus
    from zeroskip.sim.driver import Driver
    machine = Machine(compiled.config)
    asyncio.run(Driver(ModelBus(machine), machine.config).write_ext(0, compiled.ext))
    return machine


def _board_options(backend, port, baudrate):
    """The board link's keywords (``None`` on any other backend), checked."""
    if backend != "board":
        for name, value in (("port", port), ("baudrate", baudrate)):
            if value is not None:
                raise InputError(f"{name} applies to the board backend only, not {backend!r}")
        return None
    if port is None:
        raise InputError("the board backend needs a port (the board's serial device, "
                         "e.g. /dev/ttyUSB1)")
    options = {"port": port}
    if baudrate is not None:
        if not isinstance(baudrate, int) or isinstance(baudrate, bool) or baudrate <= 0:
            raise InputError(f"baudrate must be a positive integer, not {baudrate!r}")
        options["baudrate"] = baudrate
    return options


def _run_batches(program, chunks, *, backend, build_dir, resident, board, progress):
    """Per batch (a chunk of inputs), the :class:`RunResult` of the chained ``program``."""
    from zeroskip.sim.backends import Job, SessionJob, run_many
    operands = [chunk.T for chunk in chunks]
    if not resident:
        if backend == "model":
            return [_run_model(program, x) for x in operands]
        jobs = [Job(program, x) for x in operands]
    else:
        jobs = [SessionJob(program, operands)]
    if progress is None and resident:
        from zeroskip.core import progress as shown
        progress = shown.tracker(f"running {len(operands)} batch(es) on the {backend} backend")
    if board is not None:
        from zeroskip.boards.link import run_job_on_board
        return run_job_on_board(jobs[0], progress=progress, **board)
    results = run_many(jobs, backend=backend, build_dir=build_dir,
                       progress=progress if resident else None)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results[0] if resident else results


def _run_chained(compiled, x, *, backend, build_dir, progress, skip_empty, resident=False,
                 board=None):
    """:func:`run_network` with ``chained``: one linked program per batch, loaded for
    each or (``resident``) once for all."""
    from zeroskip.app.nn.chain import chain_network
    if check_skip_empty(skip_empty) is True:
        raise InputError("skip_empty=True needs the host between the layers; a chained run "
                         "sends every input")
    chain = chain_network(compiled)
    images, batch, layers = len(x), compiled.batch, len(compiled.layers)
    padded = -(-images // batch) * batch
    xs = np.zeros((padded, x.shape[1]), dtype=np.int64)
    xs[:images] = x
    chunks = [xs[i:i + batch] for i in range(0, padded, batch)]
    results = _run_batches(chain.program, chunks, backend=backend, build_dir=build_dir,
                           resident=resident, board=board,
                           progress=progress if resident else None)
    total = _empty_counters(compiled.config)
    y = np.zeros((padded, compiled.layers[-1].shape[0]), dtype=np.int64)
    for c, result in enumerate(results):
        y[c * batch:(c + 1) * batch] = np.asarray(result.y_raw, dtype=np.int64).T
        _add(total, result.counters)
    if progress is not None and not resident:
        progress(layers, layers)
    return NetworkRun(outputs=[None] * (layers - 1) + [y[:images]], counters=[total],
                      images=images, padded=padded, backend=backend,
                      sent=[images] * layers,
                      padded_per_layer=[padded] * layers, dropped=[0] * layers,
                      droppable=[False] * layers, chained=chain, resident=resident)
