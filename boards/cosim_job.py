"""cocotb test module: the host link code against the board logic over a pty.

Started by :func:`zeroskip.boards.cosim.run_board_cosim`, which describes the
run in the pickle named by ``ZEROSKIP_BOARD_JOB``; the
:class:`~zeroskip.boards.cosim.CosimReport` goes to the pickle named by
``ZEROSKIP_BOARD_RESULT``.

Threads: the host (:class:`~zeroskip.boards.link.SerialBus` and
:class:`~zeroskip.sim.driver.Driver`) runs in its own thread on the pty's
slave side, exactly as it would on a real serial port; the simulator's thread
runs the coroutines below on the master side.
"""

import asyncio
import os
import pickle
import random
import threading
import traceback
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, Timer
from cocotb.utils import get_sim_time

from zeroskip.boards import protocol as p
from zeroskip.boards.cosim import ENV_JOB, ENV_RESULT, CosimReport, RawJob
from zeroskip.boards.link import SerialBus
from zeroskip.core.errors import ZeroskipError
from zeroskip.sim.backends import run_job
from zeroskip.sim.buses import RecordingBus

#: Simulated time between two looks at the pty when it has nothing to send.
IDLE_POLL_BYTES = 2
#: Simulated time limit (a run that needs more is stuck).
MAX_SIM_TIME_NS = 5e9
#: Bit times between two updates of the host's view of the simulated time.
CLOCK_TICK_BITS = 10


class SimClock:
    """The simulated time, in seconds, as the host thread sees it.

    The simulator's thread advances it (:func:`tick`); the host's
    :class:`~zeroskip.boards.link.SerialBus` measures its timeouts with it, so
    a host waits for the same simulated time however slowly the machine runs
    the simulation.
    """

    def __init__(self):
        self.seconds = 0.0

    def __call__(self):
        return self.seconds


async def tick(clock, bit_ns):
    while True:
        clock.seconds = get_sim_time("ns") * 1e-9
        await Timer(CLOCK_TICK_BITS * bit_ns, unit="ns")


class FaultInjector:
    """Applies :class:`~zeroskip.boards.cosim.LinkFaults` to one direction."""

    def __init__(self, faults, direction, counts):
        self.faults = faults
        self.enabled = direction in faults.directions
        self.rng = random.Random(f"{faults.seed}-{direction}")
        self.direction = direction
        self.counts = counts
        for kind in ("flip", "drop", "duplicate"):
            counts[f"{direction} {kind}"] = 0
        self.answers = direction == "board->host"
        if self.answers:
            counts["board->host lost answer"] = 0
        # Where the answer frame being passed on stands.
        self.frame = bytearray()
        self.frame_length = 0
        self.losing = False

    def _lost(self, byte):
        """Whether ``byte`` belongs to an answer frame that is lost whole."""
        if not self.frame and byte != p.SYNC_RSP:
            return False
        self.frame.append(byte)
        if len(self.frame) == 1:
            self.losing = self.rng.random() < self.faults.lose_answer
            self.frame_length = 0
            if self.losing:
                self.counts["board->host lost answer"] += 1
        elif len(self.frame) == p.RESPONSE_HEADER:
            self.frame_length = p.RESPONSE_HEADER + 4 * byte + p.RESPONSE_TRAILER
        lost = self.losing
        if self.frame_length and len(self.frame) >= self.frame_length:
            self.frame.clear()
        return lost

    def apply(self, data):
        if not self.enabled:
            return data
        out = bytearray()
        f = self.faults
        for byte in data:
            if self.answers and self._lost(byte):
                continue
            r = self.rng.random()
            if r < f.drop:
                self.counts[f"{self.direction} drop"] += 1
            elif r < f.drop + f.flip:
                self.counts[f"{self.direction} flip"] += 1
                out.append(byte ^ 1 << self.rng.randrange(8))
            elif r < f.drop + f.flip + f.duplicate:
                self.counts[f"{self.direction} duplicate"] += 1
                out += bytes([byte, byte])
            else:
                out.append(byte)
        return bytes(out)


def _frame_bits(byte):
    return [0] + [byte >> i & 1 for i in range(8)] + [1]


async def host_to_board(dut, master, bit_ns, injector):
    """Serialize what the host writes onto ``uart_rx``, bit by bit."""
    dut.uart_rx.value = 1
    while True:
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            data = b""
        if not data:
            await Timer(IDLE_POLL_BYTES * 10 * bit_ns, unit="ns")
            continue
        for byte in injector.apply(data):
            for bit in _frame_bits(byte):
                dut.uart_rx.value = bit
                await Timer(bit_ns, unit="ns")


async def board_to_host(dut, master, bit_ns, injector):
    """Sample ``uart_tx`` in the middle of every bit and pass bytes to the host."""
    while True:
        await FallingEdge(dut.uart_tx)
        await Timer(bit_ns * 3 // 2, unit="ns")
        byte = 0
        for i in range(8):
            byte |= int(dut.uart_tx.value) << i
            await Timer(bit_ns, unit="ns")
        assert int(dut.uart_tx.value) == 1, "the board sent a byte without a stop bit"
        data = injector.apply(bytes([byte]))
        if data:
            os.write(master, data)


async def watch_writes(dut, writes):
    """Record every write handshake on the accelerator's AXI4-Lite port."""
    while True:
        await FallingEdge(dut.clk)
        if not int(dut.axil__awvalid.value):
            # Sleep until the next write starts.
            await RisingEdge(dut.axil__awvalid)
            continue
        if int(dut.axil__awready.value):
            writes.append((int(dut.axil__awaddr.value), int(dut.axil__wdata.value)))


@cocotb.test()
async def board_link(dut):
    """Run every job through SerialBus, the pty, the UART pins and the board logic."""
    with open(os.environ[ENV_JOB], "rb") as file:
        job = pickle.load(file)
    period = job["clock_period_ns"]
    bit_ns = period * job["divisor"]

    cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    dut.uart_rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    port = os.ttyname(slave)

    fault_counts = {}
    down = FaultInjector(job["faults"], "host->board", fault_counts)
    up = FaultInjector(job["faults"], "board->host", fault_counts)
    bus_writes = []
    cocotb.start_soon(host_to_board(dut, master, bit_ns, down))
    cocotb.start_soon(board_to_host(dut, master, bit_ns, up))
    cocotb.start_soon(watch_writes(dut, bus_writes))

    clock = SimClock()
    cocotb.start_soon(tick(clock, bit_ns))
    serial_bus = SerialBus(port, baudrate=job["baudrate"], timeout=job["host_timeout"],
                           retries=job["retries"], retry_delay=job["retry_delay"],
                           clock=clock)
    bus = RecordingBus(serial_bus)
    results = []

    def raw(ops):
        out = []
        for op in ops:
            try:
                if op[0] == "read":
                    out.append(serial_bus.read_words(op[1], op[2]))
                else:
                    bus.writes.extend((op[1] + 4 * i, w) for i, w in enumerate(op[2]))
                    out.append(serial_bus.write_words(op[1], op[2]))
            except ZeroskipError as error:
                out.append(error)
        return out

    def host():
        try:
            for item in job["jobs"]:
                if isinstance(item, RawJob):
                    results.append(raw(item.ops))
                    continue
                try:
                    # The program's configuration, as on a board: the hardware's
                    # identity and fingerprint are checked against it.
                    results.append(asyncio.run(run_job(bus, item.program.config, item)))
                except ZeroskipError as error:
                    results.append(error)
        except Exception as error:  # report it; never leave the simulation waiting
            traceback.print_exc()
            results.append(error)
        finally:
            serial_bus.close()

    thread = threading.Thread(target=host, daemon=True)
    thread.start()
    while thread.is_alive():
        await Timer(100 * bit_ns, unit="ns")
        if get_sim_time("ns") > MAX_SIM_TIME_NS:
            raise AssertionError("the host did not finish in the simulated time limit")
    thread.join()

    for result in results:
        for one in result if isinstance(result, list) else [result]:
            if hasattr(one, "backend"):
                one.backend = "board-cosim"
    report = CosimReport(results=results, link=serial_bus.stats.as_dict(), faults=fault_counts,
                         host_writes=bus.writes, bus_writes=bus_writes,
                         sim_time_ns=get_sim_time("ns"))
    partial = os.environ[ENV_RESULT] + ".partial"
    with open(partial, "wb") as file:
        pickle.dump(report, file)
    os.replace(partial, os.environ[ENV_RESULT])
    os.close(master)
    os.close(slave)
