"""The scatter/reduce network: the crossbar alone, then ``REDUCE`` on the top level.

The top-level runs load random CSR tiles, compute their row sums with an
``SPMV`` and send some of them to other lanes' rows with ``REDUCE``; the
``out`` memories must equal a NumPy replay of the ISA semantics and the
cycle count the timing contract (the ``SPMV`` part from the ISA model, the
``REDUCE`` part from the round-robin schedule over destination lanes).
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import (
    CTRL_CLEAR,
    CTRL_START,
    STATUS_DONE,
    STATUS_ERROR,
    ErrorCode,
    Insn,
    MemoryMap,
    Opcode,
    Reg,
    Region,
    route_word,
)
from zeroskip.firmware.model import Machine
from zeroskip.hdl.scatter import Scatter
from zeroskip.hdl.top import ZeroskipTop
from zeroskip.sim.buses import PysimBus
from zeroskip.sim.streams import send, simulate

CONFIG = AcceleratorConfig(pes=4, x_depth=64, nz_depth=64, row_depth=32, imem_depth=16)


def insn(opcode, **args):
    if opcode is Opcode.HALT:
        return Insn.const({"opcode": opcode}).as_value().value
    field = {Opcode.SPMV: "spmv", Opcode.REDUCE: "reduce"}[opcode]
    return Insn.const({"opcode": opcode, "args": {field: args}}).as_value().value


# ---------------------------------------------------------------------------
# The crossbar alone.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_scatter_delivers_every_sum_once_in_order(seed):
    rng = random.Random(seed)
    config = AcceleratorConfig(pes=4, row_depth=16)
    dut = Scatter(config)
    sends = [[{"lane": rng.randrange(4), "row": rng.randrange(16),
               "sum": rng.randrange(-1000, 1000)} for _ in range(rng.randrange(0, 12))]
             for _ in range(4)]
    received = [[] for _ in range(4)]
    stalls = []

    def source(p):
        async def testbench(ctx):
            await send(ctx, dut.send[p], sends[p], stall=0.3, rng=random.Random(seed * 10 + p))
        return testbench

    async def monitor(ctx):
        total = sum(len(s) for s in sends)
        async for _clk, _rst, *signals in ctx.tick().sample(
                *[r.valid for r in dut.recv], *[r.payload for r in dut.recv], dut.stall):
            valids, payloads, stall = signals[:4], signals[4:8], signals[8]
            stalls.append(stall)
            for q in range(4):
                if valids[q]:
                    received[q].append((payloads[q].row, payloads[q].sum))
            if sum(len(r) for r in received) == total:
                break

    simulate(dut, *[source(p) for p in range(4)], monitor)
    for q in range(4):
        want = sorted((s["row"], s["sum"]) for p in range(4) for s in sends[p] if s["lane"] == q)
        assert sorted(received[q]) == want
        # Per source, a destination receives the sums in the order they were sent.
        for p in range(4):
            mine = [(s["row"], s["sum"]) for s in sends[p] if s["lane"] == q]
            it = iter(received[q])
            assert all(item in it for item in mine)


# ---------------------------------------------------------------------------
# REDUCE on the top level.
# ---------------------------------------------------------------------------

def make_case(rng, config, *, routes_per_lane=None):
    """Random CSR tiles and route lists; sources in rows [n/2, n), destinations below."""
    n = 8
    lanes = []
    for p in range(config.pes):
        lengths = [rng.randrange(0, 5) for _ in range(n)]
        ends = np.cumsum(lengths).tolist()
        nz = [(rng.randrange(config.x_depth), rng.randrange(-50, 50)) for _ in range(ends[-1])]
        m = routes_per_lane[p] if routes_per_lane else rng.randrange(0, n // 2 + 1)
        s = n // 2 + rng.randrange(0, n // 2 - m + 1)
        routes = [(rng.randrange(config.pes), rng.randrange(n // 2)) for _ in range(m)]
        ptr = [n] + ends + [m, s] + [route_word(config, q, r) for q, r in routes]
        lanes.append({"ptr": ptr, "nz": nz, "routes": routes, "s": s, "reduce_base": 1 + n})
    x = [rng.randrange(-50, 50) for _ in range(config.x_depth)]
    return lanes, x


def load(write, config, lanes, x, code, bias=None):
    mmap = MemoryMap(config)
    for p, words in enumerate(bias or []):
        write(mmap.lane(Region.BIAS, p, 0), [b & 0xFFFF_FFFF for b in words])
    for i, word in enumerate(code):
        write(mmap.imem(i), [word & 0xFFFF_FFFF, word >> 32])
    write(mmap.x(0), [v & 0xFFFF_FFFF for v in x])
    vmask = (1 << config.value_width) - 1
    for p, lane in enumerate(lanes):
        write(mmap.lane(Region.PTR, p, 0), lane["ptr"])
        if lane["nz"]:
            write(mmap.lane(Region.NZ, p, 0),
                  [c | (v & vmask) << config.col_width for c, v in lane["nz"]])


COUNTERS = ("CYCLES", "INSNS", "MACS", "SKIPPED", "GATHER_STALLS", "SCATTER_STALLS")


def run_rtl(config, lanes, x, code, *, bias=None):
    top = ZeroskipTop(config)
    mmap = MemoryMap(config)
    result = {}

    async def bench(ctx):
        bus = PysimBus(ctx, top.axil)
        writes = []
        load(lambda addr, words: writes.append((addr, words)), config, lanes, x, code, bias)
        for addr, words in writes:
            await bus.write(addr, words)
        await bus.write(Reg.CTRL, [CTRL_CLEAR])
        await bus.write(Reg.CTRL, [CTRL_START])
        for _ in range(2000):
            (status,) = await bus.read(Reg.STATUS, 1)
            if status & (STATUS_DONE | STATUS_ERROR):
                break
        result["code"] = ErrorCode(status >> 8 & 0xFF)
        result["done"] = bool(status & STATUS_DONE)
        for name in COUNTERS:
            (result[name],) = await bus.read(Reg[name], 1)
        out = []
        for p in range(config.pes):
            words = await bus.read(mmap.lane(Region.OUT, p, 0), config.row_depth)
            out.append([w - (1 << 32) if w >> 31 else w for w in words])
        result["out"] = np.array(out)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result


def run_model(config, lanes, x, code, *, bias=None):
    """``out``, counters and error code of ``code`` on the ISA model."""
    machine = Machine(config)
    load(machine.write_words, config, lanes, x, code, bias)
    machine.write_word(MemoryMap.reg(Reg.CTRL), CTRL_START)
    counters = {name: machine.read_word(MemoryMap.reg(Reg[name])) for name in COUNTERS}
    return machine.out.copy(), counters, machine.error


def spmv_on_model(config, lanes, x):
    """``out`` and counters after the ``SPMV`` alone (the ISA model)."""
    out, counters, error = run_model(config, lanes, x,
                                     [insn(Opcode.SPMV, ptr_base=0), insn(Opcode.HALT)])
    assert error == ErrorCode.NONE
    return out, counters


def expected_reduce(config, lanes, out, *, src_base=0, dst_base=0):
    out = out.copy()
    partial = out.copy()
    for p, lane in enumerate(lanes):
        for i, (q, r) in enumerate(lane["routes"]):
            out[q][dst_base + r] += partial[p][src_base + lane["s"] + i]
    # The bus takes one sum per cycle: every route requests the same "bank".
    tokens = [[0] * len(lane["routes"]) for lane in lanes]
    return out, timing.schedule(tokens, 1)


def reduce_program(lanes, *, dst_base=0):
    return [insn(Opcode.SPMV, ptr_base=0),
            insn(Opcode.REDUCE, ptr_base=lanes[0]["reduce_base"], src_base=0,
                 dst_base=dst_base),
            insn(Opcode.HALT)]


@pytest.mark.parametrize("seed", range(4))
def test_reduce_adds_partial_sums_across_lanes(seed):
    rng = random.Random(seed)
    lanes, x = make_case(rng, CONFIG)
    found = run_rtl(CONFIG, lanes, x, reduce_program(lanes))
    spmv_out, spmv_counters = spmv_on_model(CONFIG, lanes, x)
    want, sched = expected_reduce(CONFIG, lanes, spmv_out)
    assert found["code"] == ErrorCode.NONE and found["done"]
    np.testing.assert_array_equal(found["out"], want)
    for name in ("MACS", "SKIPPED", "GATHER_STALLS"):
        assert found[name] == spmv_counters[name], name
    assert found["INSNS"] == spmv_counters["INSNS"] + 1
    assert found["SCATTER_STALLS"] == sched.stalls
    assert found["CYCLES"] - spmv_counters["CYCLES"] == timing.reduce_cycles(sched.cycles)
    # The ISA model predicts all of it.
    model_out, model_counters, error = run_model(CONFIG, lanes, x, reduce_program(lanes))
    assert error == ErrorCode.NONE
    np.testing.assert_array_equal(model_out, want)
    assert {name: found[name] for name in COUNTERS} == model_counters


def test_split_rows_are_finished_after_the_reduce():
    """SPMV (pieces), REDUCE, then an SPMV over empty rows with accumulate,
    bias and epilogue (how the compiler finishes split rows), then again."""
    rng = random.Random(11)
    lanes, x = make_case(rng, CONFIG, routes_per_lane=[1, 2, 3, 0])
    n = 8
    finish = lanes[0]["reduce_base"] + 2 + n // 2
    for lane in lanes:
        lane["ptr"] += [0] * (finish - len(lane["ptr"])) + [n] + [0] * n
    finishing = insn(Opcode.SPMV, ptr_base=finish, accumulate=1, bias=1, epilogue=1)
    epi = Insn.const({"opcode": Opcode.SET_EPI, "args": {"epi": {
        "shift": 2, "relu": 1, "clamp_lo": -100, "clamp_hi": 100}}}).as_value().value
    code = [epi] + reduce_program(lanes)[:2] + [finishing] + reduce_program(lanes)[:1] + \
        [finishing, insn(Opcode.HALT)]
    bias = [[rng.randrange(-300, 300) for _ in range(CONFIG.row_depth)]
            for _ in range(CONFIG.pes)]
    found = run_rtl(CONFIG, lanes, x, code, bias=bias)
    model_out, model_counters, error = run_model(CONFIG, lanes, x, code, bias=bias)
    assert found["code"] == error == ErrorCode.NONE
    np.testing.assert_array_equal(found["out"], model_out)
    assert {name: found[name] for name in COUNTERS} == model_counters
    assert model_out[:, :n].any() and (model_out[:, :n] >= 0).all()


def test_reduce_without_routes_costs_reduce_empty():
    lanes, x = make_case(random.Random(5), CONFIG, routes_per_lane=[0, 0, 0, 0])
    found = run_rtl(CONFIG, lanes, x, reduce_program(lanes))
    _, spmv_counters = spmv_on_model(CONFIG, lanes, x)
    assert found["CYCLES"] - spmv_counters["CYCLES"] == timing.REDUCE_EMPTY


def test_reduce_with_every_lane_sending_stalls_on_the_bus():
    rng = random.Random(7)
    lanes, x = make_case(rng, CONFIG, routes_per_lane=[4, 4, 4, 4])
    for lane in lanes:
        lane["routes"] = [(2, r) for r in range(4)]
        lane["ptr"][lane["reduce_base"] + 2:] = [route_word(CONFIG, 2, r) for r in range(4)]
    found = run_rtl(CONFIG, lanes, x, reduce_program(lanes))
    spmv_out, spmv_counters = spmv_on_model(CONFIG, lanes, x)
    want, sched = expected_reduce(CONFIG, lanes, spmv_out)
    np.testing.assert_array_equal(found["out"], want)
    assert sched.stalls == found["SCATTER_STALLS"] > 0
    assert found["CYCLES"] - spmv_counters["CYCLES"] == timing.reduce_cycles(sched.cycles)


@pytest.mark.parametrize("bad, pes", [("lane", 3), ("lane", 2), ("row", 3), ("header", 3)])
def test_reduce_descriptor_errors_stop_the_program(bad, pes):
    # Three lanes, so that a route can name a lane that does not exist; two,
    # so that the lane of a route has more bits than a lane index.
    config = CONFIG.replace(pes=pes)
    assert pes == 3 or config.ptr_width > config.row_addr_width + config.lane_width
    rng = random.Random(3)
    lanes, x = make_case(rng, config, routes_per_lane=[2] * pes)
    base = lanes[1]["reduce_base"]
    dst_base = 0
    if bad == "lane":
        lanes[1]["ptr"][base + 3] = route_word(config, pes, 0)
    elif bad == "row":
        dst_base = config.row_depth - 2
        lanes[1]["ptr"][base + 3] = route_word(config, 0, 3)
    else:
        lanes[1]["ptr"][base] = config.row_depth
    found = run_rtl(config, lanes, x, reduce_program(lanes, dst_base=dst_base))
    assert found["code"] == ErrorCode.DESCRIPTOR
    assert run_model(config, lanes, x, reduce_program(lanes, dst_base=dst_base))[2] == \
        ErrorCode.DESCRIPTOR


def test_reduce_is_illegal_without_the_network():
    config = CONFIG.replace(reduce=False)
    rng = random.Random(1)
    lanes, x = make_case(rng, config)
    found = run_rtl(config, lanes, x, reduce_program(lanes))
    assert found["code"] == ErrorCode.ILLEGAL_INSN
    assert run_model(config, lanes, x, reduce_program(lanes))[2] == ErrorCode.ILLEGAL_INSN
