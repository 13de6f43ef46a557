"""Back door: the simulators write and read the generated Verilog's memories directly.

Loading a large program through AXI4-Lite from Python costs about a
millisecond per word; writing the memories through cocotb handles costs a few
microseconds. :class:`BackdoorMemories` gives the
:class:`~zeroskip.sim.driver.Driver` the same four coroutines as
:class:`~zeroskip.sim.driver.BusMemories` (microcode, lane images, X, ``out``)
while control (start, status, counters) stays on the bus.

Which memory is which is decided once, here, from the Amaranth names of the
memories (:func:`zeroskip.hdl.generate.memory_map` finds them in the
generated Verilog):

- ``sequencer.imem``: the microcode, one 64-bit instruction per word;
- ``lane<p>.ptr``, ``.nz``, ``.meta``, ``.bias``, ``.out``: lane ``p``'s
  windows; with column mode ``ptr`` is ``ptr_even`` and ``ptr_odd`` (word
  ``a`` in ``ptr_<a % 2>`` at ``a // 2``);
- every memory named ``x<k>_bank<b>`` in the ``gather`` module: X. The banks
  of cluster ``k`` form one copy of X (element ``j`` in ``x<k>_bank<j % n>``
  at ``j // n`` for ``n`` banks); X is written to every copy.

A host word is truncated to its memory's width exactly as the host port does,
and an access outside a window raises the :class:`~zeroskip.core.errors.DeviceError`
the host port's ``SLVERR`` would.

:func:`compare_loads` checks the back door against the host port on a real
simulation: every word of every memory after loading each tile both ways, and
a run of the program both ways.
"""

import dataclasses
import re
import zlib

from cocotb.handle import Immediate

from zeroskip.core.arith import sign_extend
from zeroskip.core.errors import DeviceError, ZeroskipError
from zeroskip.core.isa import MemoryMap, Region
from zeroskip.hdl.formats import column_mode, uses_meta
from zeroskip.sim.driver import Driver

__all__ = ["MemorySpec", "MemoryLayout", "BackdoorMemories", "LoadComparison",
           "compare_loads"]

#: Amaranth names of lane memories (``ptr`` and ``meta`` depend on the formats).
_LANE_MEMORIES = {Region.NZ: "nz", Region.BIAS: "bias", Region.OUT: "out"}
_X_HIERARCHY = "gather"
_X_BANK = re.compile(r"x(\d+)_bank(\d+)")


@dataclasses.dataclass(frozen=True)
class MemorySpec:
    """One memory of the generated Verilog (an entry of ``memory_map``)."""
    name: str
    path: tuple
    width: int
    depth: int

    @property
    def mask(self):
        return (1 << self.width) - 1


@dataclasses.dataclass(frozen=True)
class Bank:
    """Where a window's words live: word ``a`` in ``memory`` at ``a // stride``
    when ``a % stride == phase``."""
    memory: MemorySpec
    stride: int = 1
    phase: int = 0


class MemoryLayout:
    """Which memories of the generated Verilog hold which host window.

    Parameters
    ----------
    config : AcceleratorConfig
    memories : list of dict
        :func:`zeroskip.hdl.generate.memory_map` of the configuration's Verilog.

    Raises
    ------
    ZeroskipError
        When a window's memory is missing or does not have the window's depth.
    """

    def __init__(self, config, memories):
        self.config = config
        self.map = MemoryMap(config)
        self.memories = [MemorySpec(m["name"], tuple(m["path"]), m["width"], m["depth"])
                         for m in memories]
        by_name = {m.name: m for m in self.memories}

        def find(name, depth):
            if name not in by_name:
                raise ZeroskipError(f"the generated Verilog has no memory {name!r}")
            memory = by_name[name]
            if memory.depth != depth:
                raise ZeroskipError(f"memory {name!r} holds {memory.depth} words, "
                                    f"expected {depth}")
            return memory

        self.code = find("sequencer.imem", config.imem_depth)
        self.lanes = {}
        for lane in range(config.pes):
            windows = {region: [Bank(find(f"lane{lane}.{name}", self.map.depth(region)))]
                       for region, name in _LANE_MEMORIES.items()}
            if uses_meta(config):
                windows[Region.META] = [Bank(find(f"lane{lane}.meta", config.nz_depth))]
            else:  # the host port takes and drops META writes
                windows[Region.META] = []
            if column_mode(config):
                windows[Region.PTR] = [
                    Bank(find(f"lane{lane}.ptr_{parity}", config.row_depth // 2), 2, phase)
                    for phase, parity in enumerate(("even", "odd"))]
            else:
                windows[Region.PTR] = [Bank(find(f"lane{lane}.ptr", config.row_depth))]
            self.lanes[lane] = windows
        self.x = self._x_copies()

    def _x_copies(self):
        copies = {}
        for memory in self.memories:
            *parent, name = memory.name.split(".")
            match = _X_BANK.fullmatch(name)
            if parent == [_X_HIERARCHY] and match:
                cluster, bank = map(int, match.groups())
                copies.setdefault(cluster, {})[bank] = memory
        if not copies:
            raise ZeroskipError(f"the generated Verilog has no X memories "
                                f"({_X_HIERARCHY}.x<k>_bank<b>)")
        banks = []
        for cluster, found in sorted(copies.items()):
            count = len(found)
            for index in range(count):
                memory = found.get(index)
                if memory is None or memory.depth * count != self.config.x_depth:
                    raise ZeroskipError(
                        f"the X copy of cluster {cluster} is not {count} bank(s) of "
                        f"{self.config.x_depth // count} words (x{cluster}_bank0.."
                        f"x{cluster}_bank{count - 1})")
                banks.append(Bank(memory, count, index))
        return banks

    def banks(self, region, lane=0):
        """The banks of a window: every copy of it, all of which the host writes."""
        if region == Region.IMEM:
            return [Bank(self.code)]
        if region == Region.X:
            return self.x
        return self.lanes[lane][region]

    def loadable(self):
        """Every memory the host writes (X copies included), once each."""
        banks = [Bank(self.code), *self.x]
        for windows in self.lanes.values():
            banks += [bank for region, found in windows.items() if region != Region.OUT
                      for bank in found]
        return [bank.memory for bank in banks]


class BackdoorMemories:
    """The accelerator's memories through cocotb handles (the back door).

    Writes take effect at once (``Immediate``); the accelerator must be idle,
    as the host port requires.

    Parameters
    ----------
    dut : cocotb handle of the top level
    layout : MemoryLayout
    """

    def __init__(self, dut, layout):
        self.dut = dut
        self.layout = layout
        self.map = layout.map
        self._handles = {}

    def handle(self, memory):
        """The cocotb array handle of ``memory``."""
        found = self._handles.get(memory.name)
        if found is None:
            found = self.dut
            for key in memory.path:
                found = found[key]
            self._handles[memory.name] = found
        return found

    def write_words(self, memory, start, words):
        """Write ``words`` (truncated to the memory's width) from word ``start`` of ``memory``."""
        array = self.handle(memory)
        mask = memory.mask
        for index, word in enumerate(words, start):
            array[index].set(Immediate(int(word) & mask))

    def read_words(self, memory, start=0, count=None):
        """Read ``count`` words (all by default) from word ``start`` of ``memory``, unsigned."""
        array = self.handle(memory)
        stop = memory.depth if count is None else start + count
        return [int(array[index].value) for index in range(start, stop)]

    def _write_window(self, region, lane, address, words, first_address):
        depth = self.map.depth(region) if region != Region.IMEM else self.layout.config.imem_depth
        if address < 0 or address + len(words) > depth:
            bad = max(address, depth)
            raise DeviceError(f"the accelerator rejected the write of address "
                              f"0x{first_address(bad):07x} (SLVERR)")
        for bank in self.layout.banks(region, lane):
            first = (bank.phase - address) % bank.stride
            self.write_words(bank.memory, (address + first) // bank.stride,
                             words[first::bank.stride])

    async def write_code(self, code):
        await self._nothing()
        self._write_window(Region.IMEM, 0, 0, [int(w) for w in code],
                           lambda index: self.map.imem(index))

    async def write_lane(self, region, lane, words):
        await self._nothing()
        if not 0 <= lane < self.layout.config.pes:
            raise DeviceError(f"the accelerator rejected the write of address "
                              f"0x{self.map.lane(region, lane, 0):07x} (SLVERR)")
        self._write_window(region, lane, 0, list(words),
                           lambda index: self.map.lane(region, lane, index))

    async def write_x(self, address, words):
        await self._nothing()
        self._write_window(Region.X, 0, address, list(words), self.map.x)

    async def read_out(self, lane, count):
        await self._nothing()
        depth = self.layout.config.row_depth
        if not 0 <= lane < self.layout.config.pes or count > depth:
            raise DeviceError(f"the accelerator rejected the read of address "
                              f"0x{self.map.lane(Region.OUT, lane, min(count, depth)):07x} "
                              f"(SLVERR)")
        memory, = (bank.memory for bank in self.layout.banks(Region.OUT, lane))
        # Sign-extended to the host port's 32 bits.
        words = sign_extend(self.read_words(memory, 0, count), memory.width)
        return [int(word) & 0xFFFF_FFFF for word in words]

    @staticmethod
    async def _nothing():
        """The back door takes no simulated time (a coroutine for the interface)."""


@dataclasses.dataclass
class LoadComparison:
    """The host port against the back door on one program (see :func:`compare_loads`).

    Attributes
    ----------
    words : int
        Memory words compared after the loads.
    mismatches : list of str
        ``"<memory>[<word>] after tile <t>: axi 0x.., backdoor 0x.."`` for every
        word that differs after loading a tile both ways.
    axi, backdoor : RunResult or ZeroskipError
        The program run after loading through the host port / the back door.
    out_mismatches : list of str
        ``out`` words that read differently through the port and the back door
        after the back-door run (every word of every lane).
    """
    words: int
    mismatches: list
    axi: object
    backdoor: object
    out_mismatches: list


def _pattern(memory):
    """A word pattern distinct per memory and word, to see where a load lands."""
    seed = zlib.crc32(memory.name.encode())
    return [(seed + 0x9E37_79B9 * (index + 1)) & memory.mask for index in range(memory.depth)]


async def compare_loads(bus, backdoor, job, *, max_polls):
    """Load and run ``job`` through the host port and through the back door.

    For every tile: every loadable memory is filled with a pattern, the tile
    (microcode, lane images, X) is loaded through the back door and every
    memory of the design is read; the same through the host port; the two
    must agree word for word (a memory the back door misses, such as an X
    copy it does not know, differs). Then, from zeroed memories, the whole
    program runs after host-port loads and after back-door loads, and every
    ``out`` word is read both ways.

    Returns
    -------
    LoadComparison
    """
    layout = backdoor.layout
    config = layout.config
    program = job.program
    port = Driver(bus, config, max_polls=max_polls)
    door = Driver(bus, config, max_polls=max_polls, memories=backdoor)
    x_int = program.operand(job.x_int)
    columns = x_int if x_int.ndim == 2 else x_int[:, None]
    loadable = layout.loadable()

    def fill(pattern):
        for memory in loadable:
            backdoor.write_words(memory, 0, _pattern(memory) if pattern else
                                 [0] * memory.depth)

    words = 0
    mismatches = []
    for index, tile in enumerate(program.tiles):
        snapshots = []
        for driver in (door, port):
            fill(pattern=True)
            await driver.load_tile(tile)
            await driver.load_x(tile, columns)
            snapshots.append({m.name: backdoor.read_words(m) for m in layout.memories})
        for memory in layout.memories:
            door_words, port_words = (s[memory.name] for s in snapshots)
            words += len(door_words)
            mismatches += [f"{memory.name}[{i}] after tile {index}: axi 0x{a:x}, "
                           f"backdoor 0x{b:x}"
                           for i, (a, b) in enumerate(zip(port_words, door_words)) if a != b]

    runs = []
    outs = [bank.memory for lane in range(config.pes) for bank in layout.banks(Region.OUT, lane)]
    for driver in (port, door):
        fill(pattern=False)
        for memory in outs:
            backdoor.write_words(memory, 0, [0] * memory.depth)
        try:
            runs.append(await driver.run(program, job.x_int))
        except ZeroskipError as error:
            runs.append(error)
    out_mismatches = []
    for lane in range(config.pes):
        through_port = await port.memories.read_out(lane, config.row_depth)
        through_door = await backdoor.read_out(lane, config.row_depth)
        out_mismatches += [f"lane{lane}.out[{i}]: axi 0x{a:08x}, backdoor 0x{b:08x}"
                           for i, (a, b) in enumerate(zip(through_port, through_door)) if a != b]
    return LoadComparison(words=words, mismatches=mismatches, axi=runs[0], backdoor=runs[1],
                          out_mismatches=out_mismatches)
