"""The one host driver of a zeroskip accelerator, for every backend.

:class:`Driver` loads a :class:`~zeroskip.firmware.program.Program`, writes
the input vector, runs every tile and reads results and counters. It talks to
a *bus*: any object with two coroutine methods,

``await bus.write(addr, words)``
    write 32-bit ``words`` (a sequence of ints: a list, or for the bulk
    writes of memories an int64 NumPy array) to consecutive word addresses
    from ``addr``;
``await bus.read(addr, count)``
    read ``count`` 32-bit words from consecutive word addresses.

Both raise :class:`~zeroskip.core.errors.DeviceError` when the accelerator answers
with an error. The ISA model, the Amaranth simulator, cocotb (Icarus,
Verilator) and a board's UART bridge each provide one.

The driver fills the accelerator's memories (microcode, lane images, X, and
once per run a program's external-memory image through ``EXT_ADDR``/``EXT_DATA``) and
reads ``out`` through a *memories* object with four coroutines, ``write_code``,
``write_lane``, ``write_x`` and ``read_out`` (see :class:`BusMemories`):
:class:`BusMemories` goes through the host port's memory windows, the
simulators' back door (:class:`~zeroskip.sim.backdoor.BackdoorMemories`)
writes the generated Verilog's memories directly. Control (start, status,
counters) always goes through the bus.
"""

import dataclasses
import time

import numpy as np

from zeroskip.core.arith import sign_extend
from zeroskip.core.errors import DeviceError, ProgramMismatchError, ZeroskipError
from zeroskip.core.isa import (
    CTRL_CLEAR,
    CTRL_START,
    EXT_BURST,
    HARDWARE_ID,
    STATUS_BUSY,
    STATUS_ERROR,
    ErrorCode,
    MemoryMap,
    Reg,
    Region,
    status_code,
)

__all__ = ["Driver", "Session", "BusMemories", "RunResult", "COUNTER_NAMES"]

#: Counters read after every tile, in the order of their registers.
COUNTER_NAMES = ("cycles", "insns", "macs", "skipped", "gather_stalls", "scatter_stalls")
_COUNTER_REGS = (Reg.CYCLES, Reg.INSNS, Reg.MACS, Reg.SKIPPED, Reg.GATHER_STALLS,
                 Reg.SCATTER_STALLS)


@dataclasses.dataclass
class RunResult:
    """What a run of a program produced.

    Attributes
    ----------
    y_raw : numpy.ndarray
        The accelerator's int64 output words: one per matrix row, or for a
        program with a right-hand matrix one per row and right-hand column
        (shape ``(rows, k)``).
    counters : dict
        ``cycles``, ``insns``, ``macs``, ``skipped``, ``gather_stalls``,
        ``scatter_stalls`` (ints, summed over tiles) and ``pe_busy`` (a list, one per PE).
    backend : str
    seconds : dict
        Wall-clock seconds the host spent, summed over tiles: ``load``
        (microcode, lane images, X), ``run`` (start to ``HALT``) and ``read``
        (counters and results).
    """

    y_raw: np.ndarray
    counters: dict
    backend: str = ""
    seconds: dict = dataclasses.field(default_factory=dict)


def _words(values):
    """Bus words (an int64 array) of signed or unsigned integers: their low 32 bits."""
    return np.asarray(values, dtype=np.int64) & 0xFFFF_FFFF


def _empty_counters(pes):
    counters = dict.fromkeys(COUNTER_NAMES, 0)
    counters["pe_busy"] = [0] * pes
    return counters


def _add_counters(totals, counters):
    for name in COUNTER_NAMES:
        totals[name] += counters[name]
    totals["pe_busy"] = [a + b for a, b in zip(totals["pe_busy"], counters["pe_busy"])]


class BusMemories:
    """The accelerator's memories through the host port's windows.

    Parameters
    ----------
    bus : object
        Provides ``write(addr, words)`` and ``read(addr, count)`` coroutines.
    config : AcceleratorConfig
    """

    def __init__(self, bus, config):
        self.bus = bus
        self.map = MemoryMap(config)

    async def write_code(self, code):
        """Write 64-bit instruction words from instruction 0."""
        code = np.asarray(code, dtype=np.uint64)
        halves = np.empty(2 * len(code), dtype=np.uint64)
        halves[0::2] = code & np.uint64(0xFFFF_FFFF)
        halves[1::2] = code >> np.uint64(32)
        await self.bus.write(self.map.imem(0), halves.astype(np.int64))

    async def write_lane(self, region, lane, words):
        """Write 32-bit ``words`` to ``lane``'s memory ``region`` from word 0."""
        await self.bus.write(self.map.lane(region, lane, 0), words)

    async def write_x(self, address, words):
        """Write 32-bit ``words`` (sign-extended values) to X from ``address``."""
        await self.bus.write(self.map.x(address), words)

    async def read_out(self, lane, count):
        """Read ``count`` 32-bit words of ``lane``'s ``out`` from word 0."""
        return await self.bus.read(self.map.lane(Region.OUT, lane, 0), count)


class Driver:
    """Host-side control of one accelerator through a bus.

    Parameters
    ----------
    bus : object
        Provides ``write(addr, words)`` and ``read(addr, count)`` coroutines.
    config : AcceleratorConfig
        The configuration the hardware was generated from.
    max_polls : int
        Status reads before a run that has not finished is reported as hung.
    memories : object, optional
        Where microcode, lane images and X are written and ``out`` is read
        (see the module docstring); :class:`BusMemories` on ``bus`` by default.
    """

    def __init__(self, bus, config, *, max_polls=1_000_000, memories=None):
        self.bus = bus
        self.config = config
        self.map = MemoryMap(config)
        self.max_polls = max_polls
        self.memories = BusMemories(bus, config) if memories is None else memories

    async def read_reg(self, reg):
        return (await self.bus.read(int(reg), 1))[0]

    async def identify(self):
        """Check that the hardware is a zeroskip of this driver's configuration.

        Raises
        ------
        DeviceError
            If the ID register does not read :data:`HARDWARE_ID`.
        ProgramMismatchError
            If the hardware was generated from another configuration.
        """
        ident = await self.read_reg(Reg.ID)
        if ident != HARDWARE_ID:
            raise DeviceError(f"no zeroskip accelerator answers: ID register reads 0x{ident:08x}, "
                              f"expected 0x{HARDWARE_ID:08x}")
        fingerprint = await self.read_reg(Reg.FINGERPRINT)
        if fingerprint != self.map.fingerprint_word():
            raise ProgramMismatchError(
                f"the hardware's configuration fingerprint is {fingerprint:08x} but the program "
                f"was built for {self.map.fingerprint_word():08x} ({self.config.fingerprint})")

    async def load_tile(self, tile):
        """Write a tile's microcode and lane images."""
        await self.memories.write_code(tile.code)
        for region, images in ((Region.PTR, tile.ptr), (Region.NZ, tile.nz),
                               (Region.META, getattr(tile, "meta", None)),
                               (Region.BIAS, tile.bias)):
            if images is None:
                continue
            for lane, image in enumerate(images):
                if len(image):
                    await self.memories.write_lane(region, lane, _words(image))

    async def write_ext(self, address, words):
        """Write 32-bit ``words`` to the external memory from word ``address``:
        ``EXT_ADDR``, then bursts of :data:`~zeroskip.core.isa.EXT_BURST` words to
        the auto-incrementing ``EXT_DATA`` port."""
        words = _words(words)
        if not len(words):
            return
        ext_addr, ext_data = self.map.ext()
        await self.bus.write(ext_addr, [int(address)])
        for start in range(0, len(words), EXT_BURST):
            await self.bus.write(ext_data, words[start:start + EXT_BURST])

    async def write_x(self, values, address=0):
        """Write input-vector integers to X from ``address``."""
        if len(values):
            await self.memories.write_x(address, _words(values))

    async def load_x(self, tile, columns):
        """Write the slices of the operand ``columns`` (2-D) that ``tile`` reads."""
        for address, column, start, stop in tile.loads():
            await self.write_x(columns[start:stop, column], address)

    async def wait_loaded(self):
        """Start the loaded microcode and return ``STATUS`` once it is not busy.

        Raises
        ------
        DeviceError
            When it is still busy after ``max_polls`` status reads.
        """
        await self.bus.write(int(Reg.CTRL), [CTRL_CLEAR])
        await self.bus.write(int(Reg.CTRL), [CTRL_START])
        for _ in range(self.max_polls):
            status = await self.read_reg(Reg.STATUS)
            if not status & STATUS_BUSY:
                return status
        pc = await self.read_reg(Reg.PC)
        raise DeviceError(f"the accelerator is still busy after {self.max_polls} status "
                          f"reads (instruction {pc}); it may be hung", pc=pc)

    async def stopped(self, status, *, tile=None, result=None):
        """The :class:`DeviceError` of a run that ended with ``STATUS`` ``status`` (error set).

        Its message names the error code, the instruction (the ``PC``
        register) and, when given, the index of the ``tile``.
        """
        pc = await self.read_reg(Reg.PC)
        code_value = status_code(status)
        try:
            code = ErrorCode(code_value)
            name = code.name
        except ValueError:
            code, name = None, f"unknown error {code_value}"
        where = "" if tile is None else f" (tile {tile})"
        return DeviceError(f"the accelerator stopped with {name} at instruction {pc}{where}",
                           code=code, pc=pc, tile=tile, result=result)

    async def run_loaded(self):
        """Start the loaded microcode and wait for ``HALT``.

        Raises
        ------
        DeviceError
            With the hardware's error code and PC when it stops on an error,
            or when it is still busy after ``max_polls`` status reads.
        """
        status = await self.wait_loaded()
        if status & STATUS_ERROR:
            raise await self.stopped(status)

    async def read_counters(self):
        counters = {}
        for name, reg in zip(COUNTER_NAMES, _COUNTER_REGS):
            counters[name] = await self.read_reg(reg)
        counters["pe_busy"] = await self.bus.read(self.map.pe_busy(0), self.config.pes)
        return counters

    async def read_out(self, lane, count):
        """The signed values of ``lane``'s first ``count`` ``out`` words (an int64 array)."""
        return sign_extend(await self.memories.read_out(lane, count), self.config.acc_width)

    async def read_results(self, tile, y):
        """Read the results ``tile`` produced into ``y`` (2-D: rows, right-hand columns)."""
        readback = tile.results()
        for lane in np.unique(readback[:, 0]) if len(readback) else ():
            rows = readback[readback[:, 0] == lane]
            count = int(rows[:, 1].max()) + 1
            values = await self.read_out(int(lane), count)
            y[rows[:, 2], rows[:, 3]] = values[rows[:, 1]]

    async def run_tile(self, tile, result, y_view, *, index=None):
        """Start the loaded ``tile`` on the X already written and collect what it produced.

        Adds the tile's counters to ``result.counters``, its results to
        ``y_view`` (2-D: rows, right-hand columns) and its run and read times
        to ``result.seconds``.

        Raises
        ------
        DeviceError
            When it stops on an error (named with ``index``, the tile's, when given).
        """
        started = time.perf_counter()
        status = await self.wait_loaded()
        ran = time.perf_counter()
        _add_counters(result.counters, await self.read_counters())
        failed = status & STATUS_ERROR
        if not failed or status_code(status) == ErrorCode.OVERFLOW.value:
            await self.read_results(tile, y_view)
        if failed:
            raise await self.stopped(status, tile=index, result=result)
        result.seconds["run"] += ran - started
        result.seconds["read"] += time.perf_counter() - ran

    async def run(self, program, x_int, *, progress=None):
        """Run every tile of ``program`` on the integer operand ``x_int``.

        Parameters
        ----------
        program : Program
        x_int : array of int
            The quantized operand: a vector (length = matrix columns), or for
            a program with a right-hand matrix an array of shape
            ``(columns, program.rhs_columns)``.
        progress : callable, optional
            Called as ``progress(done, total)`` after each tile.

        Returns
        -------
        RunResult

        Raises
        ------
        DeviceError
            When a tile stops on an error: its ``tile`` is the tile's index and
            its ``result`` what the run produced so far, the failed tile's
            counters included and, after ``OVERFLOW``, its results.
        """
        program.check_config(self.config)
        await self.identify()
        result, columns, y_view = _start_result(program, x_int, self.config)
        if program.ext is not None:
            started = time.perf_counter()
            await self.write_ext(0, program.ext)
            result.seconds["load"] += time.perf_counter() - started
        loaded_x = None
        for index, tile in enumerate(program.tiles):
            started = time.perf_counter()
            await self.load_tile(tile)
            loads = tuple(tile.loads())
            if loaded_x != loads:
                await self.load_x(tile, columns)
                loaded_x = loads
            result.seconds["load"] += time.perf_counter() - started
            await self.run_tile(tile, result, y_view, index=index)
            if progress is not None:
                progress(index + 1, len(program.tiles))
        return result


def _start_result(program, x_int, config):
    """``(result, columns, y_view)`` of a run of ``program`` on ``x_int``: an empty
    :class:`RunResult`, the operand as 2-D columns and the result's 2-D view."""
    x_int = program.operand(x_int)
    columns = x_int if x_int.ndim == 2 else x_int[:, None]
    result = RunResult(y_raw=program.empty_result(), counters=_empty_counters(config.pes),
                       seconds={"load": 0.0, "run": 0.0, "read": 0.0})
    y_view = result.y_raw if result.y_raw.ndim == 2 else result.y_raw[:, None]
    return result, columns, y_view


class Session:
    """A one-tile program kept on chip: loaded once, then run on operand after operand.

    :meth:`load` checks the hardware (:meth:`Driver.identify`) and writes the
    tile's microcode and lane images (a chained network's code, weights and
    biases); each :meth:`run` then writes only X, starts, polls and reads the
    counters and the results. Nothing the program leaves on chip between runs
    (X past the operand, the ``out`` words) is read before it is written again
    by the next run, so every run computes what a fresh load would.

    Parameters
    ----------
    driver : Driver
    program : Program
        Of one tile (a program of several reloads its code for every tile).

    Raises
    ------
    ZeroskipError
        If ``program`` has more than one tile.
    ProgramMismatchError
        If it was compiled for another configuration than the driver's.
    """

    def __init__(self, driver, program):
        if not isinstance(driver, Driver):
            raise TypeError(f"Driver must be a Driver, not {driver!r}")
        if len(program.tiles) != 1:
            raise ZeroskipError(f"{program.name} has {len(program.tiles)} tiles; a resident "
                                f"session keeps one tile on chip")
        program.check_config(driver.config)
        self.driver = driver
        self.program = program
        self.loaded = False
        self.load_seconds = 0.0

    async def load(self):
        """Identify the hardware and write the external memory's image (if any) and the
        tile's microcode and lane images, once."""
        if self.loaded:
            return
        started = time.perf_counter()
        await self.driver.identify()
        if self.program.ext is not None:
            await self.driver.write_ext(0, self.program.ext)
        await self.driver.load_tile(self.program.tiles[0])
        self.loaded = True
        self.load_seconds = time.perf_counter() - started

    async def run(self, x_int):
        """Write ``x_int`` to X, run the resident tile and return its :class:`RunResult`
        (``seconds["load"]`` is the X writes alone)."""
        if not self.loaded:
            await self.load()
        tile = self.program.tiles[0]
        result, columns, y_view = _start_result(self.program, x_int, self.driver.config)
        started = time.perf_counter()
        await self.driver.load_x(tile, columns)
        result.seconds["load"] += time.perf_counter() - started
        await self.driver.run_tile(tile, result, y_view, index=0)
        return result

    async def run_all(self, operands, *, progress=None):
        """Load once and run every operand of ``operands``; a list of :class:`RunResult`.

        ``progress(done, total)`` is called after each operand.
        """
        operands = list(operands)
        await self.load()
        results = []
        for done, x_int in enumerate(operands, 1):
            results.append(await self.run(x_int))
            if progress is not None:
                progress(done, len(operands))
        return results
