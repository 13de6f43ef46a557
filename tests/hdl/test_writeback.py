"""Writeback (accumulate, bias and epilogue against the ISA semantics) and the
column-mode Accumulator (read-modify-write row sums)."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module, signed
from amaranth.lib.memory import Memory

from zeroskip.core.config import AcceleratorConfig
from zeroskip.hdl.writeback import Accumulator, Writeback
from zeroskip.sim.streams import send, simulate

CONFIG16 = AcceleratorConfig(pes=1, value_width=16, acc_width=32, row_depth=64)
CONFIG8 = AcceleratorConfig(pes=1, value_width=8, acc_width=16, row_depth=64)


def wrap(config, value):
    return (value - config.acc_min) % (1 << config.acc_width) + config.acc_min


def reference(config, s, overflow, out_old, bias, args, epi):
    """Steps 2 to 4 of SPMV (zeroskip.core.isa), written out plainly."""
    def add(a, b):
        nonlocal overflow
        total = a + b
        if not config.acc_min <= total <= config.acc_max:
            overflow = True
        return wrap(config, total)

    if args["accumulate"]:
        s = add(s, out_old)
    if args["bias"]:
        s = add(s, bias)
    if args["epilogue"]:
        shift = epi["shift"]
        s = (s + ((1 << (shift - 1)) if shift else 0)) >> shift
        if epi["relu"]:
            s = max(s, 0)
        s = min(max(s, epi["clamp_lo"]), epi["clamp_hi"])
        s = min(max(s, config.value_min), config.value_max)
    return s, overflow


class Harness(Elaboratable):
    def __init__(self, config, out_init, bias_init):
        self.dut = Writeback(config)
        self.out = Memory(shape=signed(config.acc_width), depth=config.row_depth, init=out_init)
        self.bias = Memory(shape=signed(config.acc_width), depth=config.row_depth,
                           init=bias_init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.out = self.out
        m.submodules.bias = self.bias
        out_rd = self.out.read_port()
        out_wr = self.out.write_port()
        bias_rd = self.bias.read_port()
        m.d.comb += [
            out_rd.addr.eq(dut.rd_addr),
            bias_rd.addr.eq(dut.rd_addr),
            dut.out_data.eq(out_rd.data),
            dut.bias_data.eq(bias_rd.data),
            out_wr.addr.eq(dut.wr_addr),
            out_wr.data.eq(dut.wr_data),
            out_wr.en.eq(dut.wr_en),
        ]
        return m


def rand_acc(rng, config, bits):
    return rng.randint(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def random_instruction(rng, config):
    rows = rng.randint(1, 24)
    out_base = rng.randrange(config.row_depth - rows + 1)
    args = {"accumulate": rng.randint(0, 1), "bias": rng.randint(0, 1),
            "epilogue": rng.randint(0, 1), "out_base": out_base}
    lo = max(-32768, rng.randint(config.value_min * 2, config.value_max))
    hi = min(32767, rng.randint(lo, config.value_max * 2))
    if rng.random() < 0.1:
        lo, hi = hi, lo     # an empty clamp range: the result is clamp_hi
    epi = {"shift": rng.choice([0, 1, 2, 5, 8, 15, 16, 31, rng.randrange(32)]),
           "relu": rng.randint(0, 1), "clamp_lo": lo, "clamp_hi": hi}
    # Sums mostly small, sometimes near the accumulator's edges.
    bits = rng.choice([8, config.acc_width - 2, config.acc_width])
    results = [{"row": row, "sum": rand_acc(rng, config, bits),
                "overflow": int(rng.random() < 0.05)}
               for row in rng.sample(range(rows), rows)]
    return args, epi, results


def run(config, out_init, bias_init, instructions, *, stall=0.4, seed=0):
    """Run instructions back to back; returns [(out image, overflow)] after each."""
    harness = Harness(config, out_init, bias_init)
    dut = harness.dut
    snapshots = []

    async def bench(ctx):
        rng = random.Random(seed)
        for args, epi, results in instructions:
            ctx.set(dut.out_base, args["out_base"])
            ctx.set(dut.accumulate, args["accumulate"])
            ctx.set(dut.bias, args["bias"])
            ctx.set(dut.epilogue, args["epilogue"])
            ctx.set(dut.epi, epi)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            assert ctx.get(dut.input.ready)
            await send(ctx, dut.input, results, stall=stall, rng=rng)
            cycles = 0
            while not ctx.get(dut.idle):
                await ctx.tick()
                cycles += 1
            assert cycles <= Writeback.LATENCY + 1
            image = [ctx.get(harness.out.data[i]) for i in range(config.row_depth)]
            snapshots.append((image, ctx.get(dut.overflow)))

    simulate(harness, bench)
    return snapshots


def check(config, out_init, bias_init, instructions, snapshots):
    out = list(out_init)
    for (args, epi, results), (image, overflow) in zip(instructions, snapshots, strict=True):
        any_overflow = False
        for r in results:
            addr = args["out_base"] + r["row"]
            out[addr], row_overflow = reference(config, r["sum"], bool(r["overflow"]), out[addr],
                                                bias_init[addr], args, epi)
            any_overflow |= row_overflow
        assert image == out, (args, epi)
        assert overflow == any_overflow, (args, epi)


@pytest.mark.parametrize("config", [CONFIG16, CONFIG8], ids=["v16", "v8"])
@pytest.mark.parametrize("seed", range(3))
def test_random(config, seed):
    rng = random.Random(seed)
    out_init = [rand_acc(rng, config, rng.choice([6, config.acc_width])) for _ in range(64)]
    bias_init = [rand_acc(rng, config, rng.choice([6, config.acc_width])) for _ in range(64)]
    instructions = [random_instruction(rng, config) for _ in range(12)]
    snapshots = run(config, out_init, bias_init, instructions, seed=seed)
    check(config, out_init, bias_init, instructions, snapshots)


@pytest.mark.parametrize("config", [CONFIG16, CONFIG8], ids=["v16", "v8"])
def test_overflow_on_adds(config):
    top, bottom = config.acc_max, config.acc_min
    out_init = [0] * 64
    bias_init = [0] * 64
    out_init[0:4] = [top, 1, bottom, 5]
    bias_init[0:4] = [1, top, -1, 0]
    plain = {"accumulate": 0, "bias": 0, "epilogue": 0, "out_base": 0}
    epi = {"shift": 0, "relu": 0, "clamp_lo": 0, "clamp_hi": 0}
    instructions = [
        # psum add: top + 1 overflows.
        ({**plain, "accumulate": 1}, epi, [{"row": 0, "sum": 1, "overflow": 0}]),
        # psum add exactly at the edge: no overflow.
        ({**plain, "accumulate": 1, "out_base": 2}, epi, [{"row": 0, "sum": 0, "overflow": 0},
                                                          {"row": 1, "sum": -5, "overflow": 0}]),
        # bias add: 1 + top overflows.
        ({**plain, "bias": 1, "out_base": 1}, epi, [{"row": 0, "sum": 1, "overflow": 0}]),
        # bias add to the bottom edge: no overflow; then below it: overflow.
        ({**plain, "bias": 1, "out_base": 2}, epi, [{"row": 0, "sum": bottom + 1, "overflow": 0}]),
        ({**plain, "bias": 1, "out_base": 2}, epi, [{"row": 0, "sum": bottom, "overflow": 0}]),
        # psum in range only after the bias: the psum overflow is still reported.
        ({**plain, "accumulate": 1, "bias": 1, "out_base": 10}, epi,
         [{"row": 0, "sum": top, "overflow": 0}]),
        # An overflow from the PE is passed on.
        (plain, epi, [{"row": 5, "sum": 3, "overflow": 1}]),
        # Clean instruction: overflow cleared.
        (plain, epi, [{"row": 6, "sum": 3, "overflow": 0}]),
    ]
    out_init[10] = 1
    bias_init[10] = -2
    snapshots = run(config, out_init, bias_init, instructions, stall=0.0)
    check(config, out_init, bias_init, instructions, snapshots)
    assert [s[1] for s in snapshots] == [1, 0, 1, 0, 1, 1, 1, 0]


@pytest.mark.parametrize("config", [CONFIG16, CONFIG8], ids=["v16", "v8"])
def test_epilogue_edges(config):
    top, bottom = config.acc_max, config.acc_min
    sums = [top, bottom, top - 1, bottom + 1, 0, 1, -1, 2, -2, 3, -3, 7, -7, 8, -8,
            (1 << 20) + 5, -(1 << 20) - 5, 1 << 14, -(1 << 14), 12345, -12345]
    sums = [wrap(config, s) for s in sums]
    instructions = []
    shifts = {0, 1, 2, 3, 7, config.acc_width - 2, config.acc_width - 1, config.acc_width, 31}
    for shift in sorted(s for s in shifts if s < 32):
        for relu in (0, 1):
            for clamp in ((-32768, 32767), (-5, 5), (3, 100), (10, -10)):
                epi = {"shift": shift, "relu": relu, "clamp_lo": clamp[0],
                       "clamp_hi": clamp[1]}
                args = {"accumulate": 0, "bias": 0, "epilogue": 1, "out_base": 0}
                instructions.append((args, epi, [{"row": i, "sum": s, "overflow": 0}
                                                 for i, s in enumerate(sums)]))
    out_init = [0] * 64
    snapshots = run(config, out_init, out_init, instructions, stall=0.0)
    check(config, out_init, out_init, instructions, snapshots)


def test_one_result_per_cycle():
    config = CONFIG16
    harness = Harness(config, [0] * 64, list(range(64)))
    dut = harness.dut
    results = [{"row": i, "sum": 3 * i, "overflow": 0} for i in range(40)]
    done = {}

    async def bench(ctx):
        ctx.set(dut.bias, 1)
        start = None
        writes = []
        ctx.set(dut.input.payload, results[0])
        for cycle in range(len(results) + 10):
            if cycle < len(results):
                ctx.set(dut.input.payload, results[cycle])
                ctx.set(dut.input.valid, 1)
            else:
                ctx.set(dut.input.valid, 0)
            _, _, ready, wr_en = await ctx.tick().sample(dut.input.ready, dut.wr_en)
            assert ready
            if wr_en:
                start = cycle if start is None else start
                writes.append(cycle)
        done["writes"] = writes
        done["image"] = [ctx.get(harness.out.data[i]) for i in range(64)]

    simulate(harness, bench)
    # The first write is LATENCY cycles after the first result; then one per cycle.
    assert done["writes"] == list(range(Writeback.LATENCY, Writeback.LATENCY + len(results)))
    assert done["image"][:40] == [4 * i for i in range(40)]


# ---------------------------------------------------------------------------
# Accumulator: column mode's read-modify-write row sums.
# ---------------------------------------------------------------------------

class AccHarness(Elaboratable):
    def __init__(self, config, init):
        self.dut = Accumulator(config)
        self.mem = Memory(shape=signed(config.acc_width), depth=config.row_depth, init=init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.mem = self.mem
        rd = self.mem.read_port()
        wr = self.mem.write_port()
        m.d.comb += [
            rd.addr.eq(dut.rd_addr), rd.en.eq(dut.rd_en), dut.rd_data.eq(rd.data),
            wr.addr.eq(dut.wr_addr), wr.data.eq(dut.wr_data), wr.en.eq(dut.wr_en),
        ]
        return m


def run_accumulator(config, products, *, rows, base, in_stall, out_stall, seed=0,
                    init=None):
    """Zero ``rows`` rows, add ``products`` (row, value), flush; returns the flushed sums."""
    harness = AccHarness(config, init or [7] * config.row_depth)
    dut = harness.dut
    found = {}

    async def bench(ctx):
        rng = random.Random(seed)
        ctx.set(dut.base, base)
        ctx.set(dut.rows, rows)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.init, 1)
        await ctx.tick()
        ctx.set(dut.init, 0)
        cycles = 0
        while not ctx.get(dut.initialised):
            assert not ctx.get(dut.input.ready)
            cycles += 1
            await ctx.tick()
        found["init_cycles"] = cycles
        await send(ctx, dut.input, [{"row": r, "sum": v, "overflow": 0} for r, v in products],
                   stall=in_stall, rng=rng)
        while not ctx.get(dut.idle):
            await ctx.tick()
        found["overflow"] = ctx.get(dut.overflow)
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        sums = []
        while len(sums) < rows:
            ready = not (out_stall and rng.random() < out_stall)
            ctx.set(dut.output.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.output.valid, dut.output.payload)
            if valid and ready:
                sums.append((payload.row, payload.sum))
        ctx.set(dut.output.ready, 0)
        await ctx.tick()
        found["idle"] = ctx.get(dut.idle)
        found["sums"] = sums
        found["memory"] = [ctx.get(harness.mem.data[i]) for i in range(config.row_depth)]

    simulate(harness, bench)
    return found


@pytest.mark.parametrize("pattern", ["random", "same_row", "alternating"])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_accumulator_read_modify_write(pattern, stall):
    config = CONFIG16
    rng = random.Random(len(pattern) + int(stall * 10))
    rows, base = 13, 40
    if pattern == "random":
        products = [(rng.randrange(rows), rng.randint(-30000, 30000)) for _ in range(120)]
    elif pattern == "same_row":
        products = [(5, rng.randint(-30000, 30000)) for _ in range(60)]
    else:
        products = [(i % 2 * 12, rng.randint(-30000, 30000)) for i in range(60)]
    found = run_accumulator(config, products, rows=rows, base=base, in_stall=stall,
                            out_stall=stall, seed=3)
    expected = [0] * rows
    for r, v in products:
        expected[r] += v
    assert found["init_cycles"] == rows
    assert found["sums"] == list(enumerate(expected))
    assert found["memory"][base:base + rows] == expected
    assert found["memory"][:base] == [7] * base            # outside the rows: untouched
    assert not found["overflow"] and found["idle"]


def test_accumulator_overflow_of_a_partial_sum():
    config = CONFIG8
    top = config.acc_max
    found = run_accumulator(config, [(0, top), (0, 1), (0, -1), (1, -top), (1, -1)],
                            rows=2, base=0, in_stall=0.0, out_stall=0.0)
    assert found["overflow"]
    assert found["sums"] == [(0, top), (1, config.acc_min)]
    found = run_accumulator(config, [(0, top), (0, -1), (0, 1), (1, -top), (1, -1)],
                            rows=2, base=0, in_stall=0.0, out_stall=0.0)
    assert not found["overflow"]
