"""Run programs on any backend through the one driver.

``model`` executes the ISA model, ``pysim`` the Amaranth components in
Amaranth's simulator, ``icarus`` and ``verilator`` the generated Verilog under
cocotb. Every backend runs the same :class:`~zeroskip.sim.driver.Driver` code.

The simulators fill the memories (microcode, lane images, X) and read ``out``
through their back door by default (``load="backdoor"``, see
:mod:`zeroskip.sim.backdoor`), a thousand times faster than AXI4-Lite from
Python; ``load="axi"`` does everything through the host port, as a board
does. Control (start, status, counters) always uses the host port.
"""

import asyncio
import dataclasses
from pathlib import Path

from zeroskip.core.config import check_generated
from zeroskip.core.errors import DeviceError, ZeroskipError
from zeroskip.sim.driver import Driver, RunResult, Session

__all__ = ["BACKENDS", "ALL_BACKENDS", "LOAD_MODES", "Job", "SessionJob", "run", "run_many",
           "run_model", "run_job", "model_counters", "predicted_polls"]

BACKENDS = ("model", "pysim", "icarus", "verilator")
#: Every backend a program runs on: the simulators above and a board built by
#: ``zeroskip build``, over its UART bridge (:mod:`zeroskip.boards.link`).
ALL_BACKENDS = BACKENDS + ("board",)
#: How the driver fills the memories and reads ``out``: the host port or the back door.
LOAD_MODES = ("axi", "backdoor")
#: Backends with a back door into the memories.
BACKDOOR_BACKENDS = ("icarus", "verilator")


@dataclasses.dataclass
class Job:
    """One program and its quantized input vector."""
    program: object
    x_int: object


@dataclasses.dataclass
class SessionJob:
    """One one-tile program loaded once and run on each of ``operands`` in turn
    (a resident :class:`~zeroskip.sim.driver.Session`): its result is a list of
    :class:`RunResult`, one per operand."""
    program: object
    operands: list


def job_polls(job):
    """:func:`predicted_polls` of a :class:`Job`, or the most of a :class:`SessionJob`'s runs."""
    operands = job.operands if isinstance(job, SessionJob) else [job.x_int]
    return max((predicted_polls(job.program, x) for x in operands), default=10_000)


def run_job(bus, config, job, *, max_polls=None, memories=None, progress=None):
    """The coroutine that runs a :class:`Job` or a :class:`SessionJob` through a
    :class:`Driver` on ``bus``.

    ``max_polls`` defaults to :func:`job_polls`, worked out here, before the
    coroutine runs (the model it runs has an event loop of its own);
    ``memories`` is as for the driver; ``progress(done, total)`` after each
    tile of a job, each operand of a session. The coroutine returns a
    :class:`RunResult`, or for a session a list of them.
    """
    polls = job_polls(job) if max_polls is None else max_polls
    driver = Driver(bus, config, max_polls=polls, memories=memories)
    if isinstance(job, SessionJob):
        return Session(driver, job.program).run_all(job.operands, progress=progress)
    return driver.run(job.program, job.x_int, progress=progress)


def _set_backend(result, backend):
    """Name ``backend`` in a :class:`RunResult`, or in each of a session's."""
    for one in result if isinstance(result, list) else [result]:
        if isinstance(one, RunResult):
            one.backend = backend


def predicted_polls(program, x_int):
    """Status reads a run may take before it counts as hung.

    The ISA model predicts the cycles; a status read takes at least four
    cycles on AXI4-Lite, so four times the prediction (plus a margin) can
    only be exceeded by hardware that does not finish.
    """
    try:
        cycles = model_counters(program, x_int)["cycles"]
    except ZeroskipError:
        cycles = 0
    return 4 * cycles + 10_000


def run_model(program, x_int, *, machine=None, progress=None):
    """Run ``program`` on the ISA model through the driver and return its :class:`RunResult`.

    Parameters
    ----------
    machine : Machine, optional
        The :class:`~zeroskip.firmware.model.Machine` to run on (a fresh one of
        the program's configuration by default).
    progress : callable, optional
        As for :meth:`Driver.run`.

    Raises
    ------
    DeviceError
        When a tile stops on an error (see :meth:`Driver.run`: the error's
        ``result`` holds what the run produced up to it).
    ProgramMismatchError
        If ``machine`` was built for another configuration.
    InputError
        If ``x_int`` has the wrong shape or values that do not fit.
    """
    from zeroskip.firmware.model import Machine
    from zeroskip.sim.buses import ModelBus
    if machine is None:
        machine = Machine(program.config)
    driver = Driver(ModelBus(machine), machine.config)
    return asyncio.run(driver.run(program, x_int, progress=progress))


def run_model_session(job, *, progress=None):
    """Run a :class:`SessionJob` on a fresh ISA model (which keeps its memories between
    runs, as the hardware does); a list of :class:`RunResult`."""
    from zeroskip.firmware.model import Machine
    from zeroskip.sim.buses import ModelBus
    machine = Machine(job.program.config)
    return asyncio.run(run_job(ModelBus(machine), machine.config, job, max_polls=1_000_000,
                               progress=progress))


def model_counters(program, x_int):
    """The counters of a run of ``program`` on the ISA model, up to its error if it fails.

    Raises
    ------
    InputError
        If ``x_int`` has the wrong shape or values that do not fit.
    """
    try:
        return run_model(program, x_int).counters
    except DeviceError as error:
        if error.result is None:
            raise
        return error.result.counters


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ZeroskipError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _check_load(load, backend):
    """The load mode for ``backend``: ``load``, or its default when ``None``."""
    if load is None:
        return "backdoor" if backend in BACKDOOR_BACKENDS else "axi"
    if load not in LOAD_MODES:
        raise ZeroskipError(f"unknown load {load!r}; choose one of {', '.join(LOAD_MODES)}")
    if load == "backdoor" and backend not in BACKDOOR_BACKENDS:
        raise ZeroskipError(f"load 'backdoor' needs a simulator backend "
                            f"({', '.join(BACKDOOR_BACKENDS)}), not {backend!r}")
    return load


def run_many(jobs, *, backend, load=None, waves=False, build_dir="build", progress=None):
    """Run ``jobs`` (all built for one configuration) on ``backend``.

    Simulator backends build the hardware once per configuration and run all
    jobs in one simulation.

    Parameters
    ----------
    load : str, optional
        ``"backdoor"`` (the default on ``icarus`` and ``verilator``) writes the
        memories and reads ``out`` through the simulator's handles; ``"axi"``
        (the only mode of ``model`` and ``pysim``) through the host port.

    Returns
    -------
    list
        Per job, a :class:`RunResult` (for a :class:`SessionJob`, a list of
        them) or the :class:`ZeroskipError` it raised.
    """
    _check_backend(backend)
    load = _check_load(load, backend)
    jobs = list(jobs)
    if not jobs:
        return []
    config = jobs[0].program.config
    for job in jobs:
        job.program.check_config(config)
    if backend != "model":
        check_generated(config, ext_port=backend == "pysim")
    if backend == "model":
        results = [_run_model(job, progress) for job in jobs]
    elif backend == "pysim":
        results = _run_pysim(config, jobs, waves=waves, build_dir=build_dir, progress=progress)
    else:
        from zeroskip.sim.cocotb_backend import run_cocotb
        results = run_cocotb(backend, config, jobs, waves=waves, build_dir=build_dir, load=load)
    for result in results:
        _set_backend(result, backend)
    return results


def run(program, x_int, *, backend, load=None, waves=False, build_dir="build", progress=None):
    """Run one program on ``backend`` and return its :class:`RunResult`.

    ``load`` is as for :func:`run_many`.

    Raises
    ------
    ZeroskipError
        Whatever the driver or the hardware reported.
    """
    result, = run_many([Job(program, x_int)], backend=backend, load=load, waves=waves,
                       build_dir=build_dir, progress=progress)
    if isinstance(result, Exception):
        raise result
    return result


def _run_model(job, progress):
    try:
        if isinstance(job, SessionJob):
            return run_model_session(job, progress=progress)
        return run_model(job.program, job.x_int, progress=progress)
    except ZeroskipError as error:
        return error


def _run_pysim(config, jobs, *, waves, build_dir, progress):
    from amaranth.sim import Simulator

    from zeroskip.hdl.top import ZeroskipTop
    from zeroskip.sim.buses import PysimBus

    if config.ext_words:
        from zeroskip.sim.extmem import SimulationTop
        top = SimulationTop(config)
    else:
        top = ZeroskipTop(config)
    results = []

    async def testbench(ctx):
        bus = PysimBus(ctx, top.axil)
        for job in jobs:
            try:
                results.append(await run_job(bus, config, job, progress=progress))
            except ZeroskipError as error:
                results.append(error)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if waves:
        path = Path(build_dir) / "waves" / f"pysim-{config.fingerprint}.vcd"
        path.parent.mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(path)):
            sim.run()
    else:
        sim.run()
    return results
