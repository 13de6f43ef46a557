# amaranth: UnusedElaboratable=no

"""The external memory on the whole accelerator (pysim, over AXI4-Lite, with the
simulated memory attached) against the ISA model.

The same script of host accesses runs on the RTL and on the model: every
access's answer (the words read, or ``SLVERR``) must agree, and so must every
run's ``STATUS``, ``PC`` and counters. The runs measure ``LOAD``, ``SYNC`` and
``HALT``: loads alone, behind one another, a queue that fills, loads of no
words, for ``count`` 0, 1 and the largest, on 1, 2 and 4 lanes and two
latencies; ``CYCLES`` must be the load rule's (``zeroskip.core.timing``).
"""

import asyncio
import random

import pytest
from amaranth.sim import Simulator

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import DeviceError
from zeroskip.core.isa import (
    CTRL_CLEAR,
    CTRL_START,
    EXT_BURST,
    STATUS_BUSY,
    LoadRegion,
    MemoryMap,
    Reg,
    Region,
)
from zeroskip.firmware.asm import encode_halt, encode_load, encode_nop, encode_spmv, encode_sync
from zeroskip.firmware.model import Machine
from zeroskip.hdl.top import ZeroskipTop
from zeroskip.sim.buses import ModelBus, PysimBus
from zeroskip.sim.extmem import SimulationTop

CONFIGS = {
    "p1l9": AcceleratorConfig(pes=1, x_depth=32, nz_depth=64, row_depth=32, imem_depth=32,
                              formats=("csr",), reduce=False, ext_words=1024, ext_latency=9),
    "p2l1": AcceleratorConfig(pes=2, x_depth=32, nz_depth=64, row_depth=32, imem_depth=32,
                              formats=("csr",), ext_words=1024, ext_latency=1),
    "p4l9": AcceleratorConfig(pes=4, x_depth=32, nz_depth=64, row_depth=16, imem_depth=32,
                              formats=("csr", "coo"), ext_words=2048, ext_latency=9),
}
COUNTERS = {"cycles": Reg.CYCLES, "insns": Reg.INSNS, "macs": Reg.MACS}
HALT = encode_halt()
SLVERR = "SLVERR"


async def access(coroutine):
    try:
        return await coroutine
    except DeviceError:
        return SLVERR


async def run_code(bus, config, code):
    """Write ``code``, start it, wait and return its ``STATUS``, ``PC`` and counters."""
    mmap = MemoryMap(config)
    for i, word in enumerate(code):
        await bus.write(mmap.imem(i), [word & 0xFFFF_FFFF, word >> 32])
    await bus.write(Reg.CTRL, [CTRL_CLEAR])
    await bus.write(Reg.CTRL, [CTRL_START])
    for _ in range(10_000):
        (status,) = await bus.read(Reg.STATUS, 1)
        if not status & STATUS_BUSY:
            break
    result = {"status": status, "pc": (await bus.read(Reg.PC, 1))[0]}
    for name, reg in COUNTERS.items():
        (result[name],) = await bus.read(reg, 1)
    return result


async def script(bus, config, steps):
    """Run ``steps`` (``("write", addr, words)``, ``("read", addr, count)`` or
    ``("run", code)``); the answer of each."""
    answers = []
    for step in steps:
        if step[0] == "write":
            answers.append(await access(bus.write(step[1], step[2])))
        elif step[0] == "read":
            answers.append(await access(bus.read(step[1], step[2])))
        else:
            answers.append(await run_code(bus, config, step[1]))
    return answers


def on_pysim(config, steps, bench=None):
    top = SimulationTop(config)
    found = []

    async def testbench(ctx):
        bus = PysimBus(ctx, top.axil)
        found.extend(await script(bus, config, steps))
        if bench is not None:
            await bench(ctx, bus)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return found


def on_model(config, steps):
    return asyncio.run(script(ModelBus(Machine(config)), config, steps))


def port_steps(config, rng):
    """Host accesses of the port: bursts, read-back, the address register, the ends."""
    n = config.ext_words
    image = [rng.randrange(1 << 32) for _ in range(EXT_BURST + 40)]
    data = int(Reg.EXT_DATA)
    return [
        ("read", Reg.EXT_ADDR, 1),
        ("write", Reg.EXT_ADDR, [100]),
        ("write", data, image[:EXT_BURST]),              # one burst: EXT_DATA .. + 4 * 255
        ("write", data, image[EXT_BURST:]),
        ("read", Reg.EXT_ADDR, 1),
        ("write", Reg.EXT_ADDR, [100]),
        ("read", data, 70),
        ("read", data + 4 * 7, 3),                       # any word of the port
        ("read", Reg.EXT_ADDR, 1),
        ("write", Reg.EXT_ADDR, [n]),                    # past the memory
        ("write", Reg.EXT_ADDR, [0xFFFF_FFFF]),
        ("read", Reg.EXT_ADDR, 1),
        ("write", Reg.EXT_ADDR, [n - 2]),
        ("write", data, [1, 2]),                         # the last two words
        ("write", data, [3]),                            # past the end
        ("read", data, 1),
        ("read", Reg.EXT_ADDR, 1),
        ("write", Reg.EXT_ADDR, [n - 2]),
        ("read", data, 2),
        ("read", data, 1),
        ("write", data + 4 * EXT_BURST, [5]),            # past the port's words
        ("read", data + 4 * EXT_BURST, 1),
        ("write", Reg.EXT_ADDR, [100]),
        ("read", data, EXT_BURST + 40),
    ]


def load_steps(config, rng):
    """``LOAD``/``SYNC``/``HALT`` runs for their cycles, and their error cases."""
    c = config
    largest = {region: min(MemoryMap(c).depth(window), c.ext_words // c.pes)
               for region, window in ((LoadRegion.PTR, Region.PTR), (LoadRegion.NZ, Region.NZ),
                                      (LoadRegion.BIAS, Region.BIAS))}
    steps = [("write", Reg.EXT_ADDR, [0]),
             ("write", int(Reg.EXT_DATA), [rng.randrange(1 << 32) for _ in range(EXT_BURST)])]
    for count in (0, 1, largest[LoadRegion.NZ]):
        steps.append(("run", [encode_load(region=LoadRegion.NZ, count=count), HALT]))
        steps.append(("run", [encode_load(region=LoadRegion.NZ, count=count), encode_sync(),
                              HALT]))
    # Back to back, behind work (NOPs), a queue that fills, loads of no words among them.
    regions = list(largest)
    loads = [encode_load(region=regions[k % 3], count=rng.randint(0, largest[regions[k % 3]]),
                         src=rng.randint(0, 8)) for k in range(7)]
    steps.append(("run", loads + [HALT]))
    steps.append(("run", loads[:2] + [encode_nop()] * 9 + loads[2:] + [encode_sync(), HALT]))
    steps.append(("run", [encode_load(region=LoadRegion.PTR, count=c.row_depth)] * 6
                  + [encode_sync(), encode_sync(), HALT]))
    # An SPMV of the loaded descriptor (ptr[0] = 0 rows) hides part of a load.
    steps.append(("run", [encode_load(region=LoadRegion.PTR, count=1, src=EXT_BURST - 1),
                          encode_sync(),
                          encode_load(region=LoadRegion.NZ, count=largest[LoadRegion.NZ]),
                          encode_spmv(), encode_sync(), HALT]))
    # Errors: past the region, past the external memory, with loads queued.
    steps.append(("run", [encode_load(region=LoadRegion.BIAS, dst_base=1,
                                      count=c.row_depth), HALT]))
    steps.append(("run", [encode_load(region=LoadRegion.NZ, count=1,
                                      src=c.ext_words - c.pes + 1), HALT]))
    steps.append(("run", [encode_load(region=LoadRegion.NZ, count=largest[LoadRegion.NZ])] * 3
                  + [0xF, HALT]))
    steps.append(("run", [encode_load(region=LoadRegion.META, count=1), encode_sync(), HALT]))
    return steps


@pytest.mark.parametrize("name", list(CONFIGS))
def test_port_and_loads_match_the_model(name):
    config = CONFIGS[name]
    rng = random.Random(name)
    steps = port_steps(config, rng) + load_steps(config, rng)
    got, want = on_pysim(config, steps), on_model(config, steps)
    assert len(got) == len(want) == len(steps)
    for step, g, w in zip(steps, got, want):
        if step[0] == "run" and isinstance(w, dict) and w["status"] & 0b100:
            # After an error the failing instruction's counters are undefined.
            g, w = (g["status"], g["pc"]), (w["status"], w["pc"])
        assert g == w, step
    # A load alone: the HALT waits for its whole transfer (the load rule's
    # cycles); one of no words transfers nothing.
    runs = [w for step, w in zip(steps, want) if step[0] == "run"]
    largest = min(config.nz_depth, config.ext_words // config.pes)
    alone = timing.LOAD_OVERHEAD + timing.INSN_OVERHEAD
    assert [runs[k]["cycles"] for k in (0, 2, 4)] == [
        alone + timing.load_cycles(count, config) for count in (0, 1, largest)]
    assert runs[5]["cycles"] == runs[4]["cycles"] + timing.INSN_OVERHEAD


def test_host_access_to_the_port_while_busy_answers_slverr():
    config = CONFIGS["p2l1"]
    code = [encode_load(region=LoadRegion.NZ, count=config.nz_depth), encode_sync(), HALT]
    seen = {}

    async def bench(ctx, bus):
        mmap = MemoryMap(config)
        for i, word in enumerate(code):
            await bus.write(mmap.imem(i), [word & 0xFFFF_FFFF, word >> 32])
        await bus.write(Reg.CTRL, [CTRL_START])
        seen["write"] = await access(bus.write(int(Reg.EXT_DATA), [7]))
        seen["read"] = await access(bus.read(int(Reg.EXT_DATA), 1))
        (status,) = await bus.read(Reg.STATUS, 1)
        seen["busy"] = bool(status & STATUS_BUSY)

    on_pysim(config, [], bench)
    assert seen == {"write": SLVERR, "read": SLVERR, "busy": True}


def test_without_an_external_memory_the_port_is_unassigned_and_load_is_illegal():
    config = AcceleratorConfig(pes=2, x_depth=32, nz_depth=64, row_depth=32, imem_depth=8,
                               formats=("csr",))
    steps = [("read", Reg.EXT_ADDR, 1), ("write", Reg.EXT_ADDR, [0]),
             ("write", int(Reg.EXT_DATA), [1]), ("read", int(Reg.EXT_DATA), 1),
             ("run", [encode_nop(), encode_load(region=LoadRegion.NZ, count=1), HALT]),
             ("run", [encode_nop(), encode_sync(), HALT])]
    top = ZeroskipTop(config)
    assert not hasattr(top, "ext")
    found = []

    async def testbench(ctx):
        found.extend(await script(PysimBus(ctx, top.axil), config, steps))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert found == on_model(config, steps)
    assert found[:4] == [[0], SLVERR, SLVERR, [0]]
    assert [(r["status"] >> 8, r["pc"]) for r in found[4:]] == [(1, 1), (1, 1)]
