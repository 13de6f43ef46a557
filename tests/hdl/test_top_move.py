# amaranth: UnusedElaboratable=no

"""``MOVE`` on the whole accelerator (pysim, over AXI4-Lite) against the ISA model.

One session of runs goes through the host port of the RTL and of the ISA
model alike; every run's ``STATUS``, ``PC``, counters and every lane's ``out``
must agree. The host cannot read X, so a run reads it back with an ``SPMV``:
lane ``p``'s row ``i`` holds one nonzero, 1 at column ``p * R + i``, so
``out[p][i] = x[p * R + i]``. The ``out`` words a ``MOVE`` copies are written
by an ``SPMV`` over empty rows with ``bias`` (``out = bias``), with values
inside and outside the value width. The expected X is replayed here from
the ISA semantics, and ``MOVE``'s cycles from the timing contract.
"""

import asyncio
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import (
    CTRL_CLEAR,
    CTRL_START,
    STATUS_BUSY,
    ErrorCode,
    MemoryMap,
    Reg,
    Region,
    status_code,
    status_word,
)
from zeroskip.firmware.asm import encode_halt, encode_move, encode_spmv
from zeroskip.firmware.model import Machine
from zeroskip.hdl.top import ZeroskipTop
from zeroskip.sim.buses import ModelBus, PysimBus

CONFIGS = {
    "p1": AcceleratorConfig(pes=1, x_depth=32, nz_depth=64, row_depth=64, imem_depth=16,
                            formats=("csr",), reduce=False),
    "p2": AcceleratorConfig(pes=2, x_depth=64, nz_depth=64, row_depth=64, imem_depth=16,
                            formats=("csr",), reduce=False),
    "p2c2v8": AcceleratorConfig(pes=2, value_width=8, acc_width=20, x_depth=64, nz_depth=64,
                                row_depth=64, imem_depth=16, formats=("csr",), reduce=False,
                                cluster_lanes=2),
    "p4c2": AcceleratorConfig(pes=4, x_depth=64, nz_depth=64, row_depth=64, imem_depth=16,
                              formats=("csr",), cluster_lanes=2),
}

#: Rows of the bias tile (``out[p][0:FILLED] = bias[p][0:FILLED]``); its
#: descriptor is ``ptr[0:FILLED + 1]``, the read-back tile's follows it.
FILLED = 16
READBACK_PTR = FILLED + 1
COUNTERS = {"cycles": Reg.CYCLES, "insns": Reg.INSNS, "macs": Reg.MACS,
            "skipped": Reg.SKIPPED, "gather_stalls": Reg.GATHER_STALLS}

FILL = encode_spmv(ptr_base=0, bias=True)
READBACK = encode_spmv(ptr_base=READBACK_PTR)
HALT = encode_halt()


def readback_rows(config):
    """Rows per lane of the read-back tile: every X word once."""
    return config.x_depth // config.pes


def lane_images(config):
    """Per lane ``(ptr words, nz words)``: the bias tile and the read-back tile."""
    rows = readback_rows(config)
    vmask = (1 << config.value_width) - 1
    images = []
    for p in range(config.pes):
        ptr = [FILLED] + [0] * FILLED + [rows] + list(range(1, rows + 1))
        nz = [(p * rows + i) | (1 & vmask) << config.col_width for i in range(rows)]
        images.append((ptr, nz))
    return images


def random_bias(config, rng):
    """Bias words inside and outside the value width (the latter saturate)."""
    low, high = config.acc_min, config.acc_max
    vlow, vhigh = config.value_min, config.value_max
    return [[rng.choice((rng.randint(vlow, vhigh), rng.randint(low, high), vlow, vhigh))
             for _ in range(config.row_depth)] for _ in range(config.pes)]


def random_move(config, rng):
    count = rng.randint(0, min(config.row_depth, config.x_depth // config.pes))
    return {"src_base": rng.randint(0, config.row_depth - count),
            "dst_base": rng.randint(0, config.x_depth - config.pes * count), "count": count}


async def session(bus, config, runs):
    """Load and run each of ``runs`` (dicts: ``code``, optional ``x``, ``bias``) through
    the host port; per run its ``status``, ``pc``, counters and ``out`` (per lane)."""
    mmap = MemoryMap(config)
    for p, (ptr, nz) in enumerate(lane_images(config)):
        await bus.write(mmap.lane(Region.PTR, p, 0), ptr)
        await bus.write(mmap.lane(Region.NZ, p, 0), nz)
    results = []
    for run in runs:
        for i, word in enumerate(run["code"]):
            await bus.write(mmap.imem(i), [word & 0xFFFF_FFFF, word >> 32])
        if "x" in run:
            await bus.write(mmap.x(0), [v & 0xFFFF_FFFF for v in run["x"]])
        for p, words in enumerate(run.get("bias", ())):
            await bus.write(mmap.lane(Region.BIAS, p, 0), [b & 0xFFFF_FFFF for b in words])
        await bus.write(Reg.CTRL, [CTRL_CLEAR])
        await bus.write(Reg.CTRL, [CTRL_START])
        for _ in range(10_000):
            (status,) = await bus.read(Reg.STATUS, 1)
            if not status & STATUS_BUSY:
                break
        result = {"status": status, "pc": (await bus.read(Reg.PC, 1))[0]}
        for name, reg in COUNTERS.items():
            (result[name],) = await bus.read(reg, 1)
        result["out"] = [[v - (1 << 32) if v >> 31 else v
                          for v in await bus.read(mmap.lane(Region.OUT, p, 0), config.row_depth)]
                         for p in range(config.pes)]
        results.append(result)
    return results


def on_pysim(config, runs):
    top = ZeroskipTop(config)
    found = []

    async def bench(ctx):
        found.extend(await session(PysimBus(ctx, top.axil), config, runs))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return found


def on_model(config, runs):
    return asyncio.run(session(ModelBus(Machine(config)), config, runs))


def same(got, want, *, failed):
    """RTL and model agree; after an error the failing instruction's counters are
    undefined, so only ``STATUS``, ``PC`` and ``out`` are compared."""
    keys = ("status", "pc", "out") if failed else tuple(got)
    return {k: got[k] for k in keys} == {k: want[k] for k in keys}


def saturate(value, config):
    return min(max(value, config.value_min), config.value_max)


def replay(config, x, bias, moves, before):
    """The X buffer after the fill and ``moves``, and ``out`` after the read-back
    (``before``: ``out`` at the start of the run)."""
    x = list(x)
    out = [[b if i < FILLED else old for i, (b, old) in enumerate(zip(lane, old_lane))]
           for lane, old_lane in zip(bias, before)]
    for move in moves:
        for p in range(config.pes):
            for i in range(move["count"]):
                x[move["dst_base"] + p * move["count"] + i] = \
                    saturate(out[p][move["src_base"] + i], config)
    rows = readback_rows(config)
    for p in range(config.pes):
        out[p][:rows] = x[p * rows:(p + 1) * rows]
    return x, out


def runs_for(config, seed):
    """Random MOVE programs, MOVE alone for its cycles, and the error cases."""
    rng = random.Random(seed)
    c = config
    runs, checks = [], []
    out = [[0] * c.row_depth for _ in range(c.pes)]   # out at reset
    for _ in range(2):
        x = [rng.randint(c.value_min, c.value_max) for _ in range(c.x_depth)]
        bias = random_bias(c, rng)
        moves = [random_move(c, rng) for _ in range(3)]
        runs.append({"code": [FILL] + [encode_move(**m) for m in moves] + [READBACK, HALT],
                     "x": x, "bias": bias})
        expected = replay(c, x, bias, moves, out)
        checks.append(("moves", expected))
        out = expected[1]
    for count in (0, 1, min(c.row_depth, c.x_depth // c.pes)):
        runs.append({"code": [encode_move(count=count), HALT]})
        checks.append(("cycles", timing.move_cycles(count, c.pes) + timing.INSN_OVERHEAD))
    too_many = c.x_depth // c.pes + 1
    bad = [  # (operands, why): each reaches one word past a memory
        ({"src_base": c.row_depth - 3, "count": 4, "dst_base": 0}, "out"),
        ({"src_base": 0, "count": 4, "dst_base": c.x_depth - 4 * c.pes + 1}, "x"),
        ({"src_base": 0, "count": too_many, "dst_base": 0}, "x"),
    ]
    for operands, _ in bad:
        runs.append({"code": [FILL, encode_move(**operands), HALT]})
        checks.append(("error", 1))
    # A failing MOVE writes nothing: X still holds what the host wrote last.
    x = [rng.randint(c.value_min, c.value_max) for _ in range(c.x_depth)]
    runs.append({"code": [encode_move(**bad[1][0]), HALT], "x": x})
    checks.append(("error", 0))
    runs.append({"code": [READBACK, HALT]})
    checks.append(("readback", x))
    return runs, checks


@pytest.mark.parametrize("name", CONFIGS)
def test_move_matches_model_and_semantics(name):
    config = CONFIGS[name]
    runs, checks = runs_for(config, seed=sorted(CONFIGS).index(name))
    rtl, model = on_pysim(config, runs), on_model(config, runs)
    rows = readback_rows(config)
    for run, (kind, expected), got, want in zip(runs, checks, rtl, model):
        assert same(got, want, failed=kind == "error"), (kind, run["code"])
        if kind == "error":
            assert got["status"] == status_word(busy=False, done=False,
                                                code=ErrorCode.DESCRIPTOR)
            assert status_code(got["status"]) == ErrorCode.DESCRIPTOR.value
            assert got["pc"] == expected
            continue
        assert got["status"] == status_word(busy=False, done=True, code=ErrorCode.NONE)
        if kind == "moves":
            x, out = expected
            assert got["out"] == out
            assert [w for p in range(config.pes) for w in got["out"][p][:rows]] == x
            assert got["insns"] == len(run["code"])
            assert got["macs"] == config.x_depth - x.count(0)
        elif kind == "cycles":
            # The constant measured: MOVE_OVERHEAD + pes * count, then HALT.
            assert got["cycles"] == expected
            assert (got["insns"], got["macs"], got["gather_stalls"]) == (2, 0, 0)
        else:
            assert [w for p in range(config.pes) for w in got["out"][p][:rows]] == expected


def test_move_after_a_failed_spmv_runs_on_pysim():
    """The lanes' sticky descriptor error of an earlier run does not fail a MOVE."""
    config = CONFIGS["p2"]
    runs = [{"code": [encode_spmv(ptr_base=READBACK_PTR, out_base=config.row_depth - 1), HALT]},
            {"code": [encode_move(count=3), HALT]}]
    rtl, model = on_pysim(config, runs), on_model(config, runs)
    assert same(rtl[0], model[0], failed=True) and same(rtl[1], model[1], failed=False)
    assert status_code(rtl[0]["status"]) == ErrorCode.DESCRIPTOR.value
    assert rtl[1]["status"] == status_word(busy=False, done=True, code=ErrorCode.NONE)
    assert rtl[1]["cycles"] == timing.move_cycles(3, config.pes) + timing.INSN_OVERHEAD


def test_move_operands_wide_enough_for_every_configuration_on_the_model():
    """The largest buffers take every MOVE the operand fields can name."""
    big = AcceleratorConfig(pes=1, x_depth=16384, row_depth=4096)
    assert encode_move(src_base=big.row_depth - 1, dst_base=big.x_depth - 1,
                       count=big.row_depth) >= 0
    machine = Machine(big)
    machine.out[0, :] = np.arange(big.row_depth) - 2000
    machine.imem[0] = encode_move(src_base=0, dst_base=big.x_depth - big.row_depth,
                                  count=big.row_depth)
    machine.imem[1] = HALT
    machine.run()
    assert machine.error == ErrorCode.NONE
    np.testing.assert_array_equal(machine.x[-big.row_depth:], np.arange(big.row_depth) - 2000)


def test_move_is_illegal_without_the_move_engine():
    """``move=False`` generates no move engine: ``MOVE`` is an illegal instruction,
    on the RTL as in the model (same STATUS, PC and cycles)."""
    config = CONFIGS["p2"].replace(move=False)
    runs = [{"code": [encode_move(count=1), HALT]}]
    (rtl,), (model,) = on_pysim(config, runs), on_model(config, runs)
    assert rtl["status"] == model["status"] == status_word(busy=False, done=False,
                                                           code=ErrorCode.ILLEGAL_INSN)
    assert rtl["pc"] == model["pc"] == 0
    assert rtl["cycles"] == model["cycles"] == timing.INSN_OVERHEAD
