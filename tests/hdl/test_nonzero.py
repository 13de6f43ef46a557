# amaranth: UnusedElaboratable=no

"""Nonzero detector and column queue: entries, order, step timing, stalls."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module, signed
from amaranth.lib.memory import Memory

from zeroskip.core.config import AcceleratorConfig
from zeroskip.hdl.nonzero import ColumnQueue, NonzeroDetector
from zeroskip.sim.streams import receive, send, simulate


class Harness(Elaboratable):
    """The detector reading ``x`` from ``x_banks`` banks, as the gather holds them."""

    def __init__(self, config, x):
        self.config = config
        self.dut = NonzeroDetector(config)
        banks = config.x_banks
        self.banks = [Memory(shape=signed(config.value_width), depth=config.x_depth // banks,
                             init=x[b::banks]) for b in range(banks)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        for b, bank in enumerate(self.banks):
            m.submodules[f"bank{b}"] = bank
            port = bank.read_port()
            m.d.comb += [port.addr.eq(dut.scan_addr), port.en.eq(dut.scan_en),
                         dut.scan_data[b].eq(port.data)]
        return m


def steps(config, x, x_base, count):
    """The detector's steps: per window ``max(m, 1)``, entries ``(col, value)`` or None."""
    banks = config.x_banks
    out = []
    if count == 0:
        return out
    for w in range(x_base // banks, (x_base + count - 1) // banks + 1):
        found = [(j - x_base, x[j]) for j in range(w * banks, w * banks + banks)
                 if x_base <= j < x_base + count and x[j]]
        out += found or [None]
    return out


def run(config, x, scans, *, stall=0.0, seed=0):
    """Run ``scans`` (x_base, count) back to back; per scan the entries and their cycles."""
    harness = Harness(config, x)
    dut = harness.dut
    results = []

    async def bench(ctx):
        rng = random.Random(seed)
        for x_base, count in scans:
            ctx.set(dut.x_base, x_base)
            ctx.set(dut.count, count)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.x_base, 0)
            ctx.set(dut.count, 0)
            entries, offered, taken = [], [], []
            cycle = 1
            was_valid = False
            while True:
                ready = not (stall and rng.random() < stall)
                ctx.set(dut.columns.ready, ready)
                _, _, valid, payload, busy = await ctx.tick().sample(
                    dut.columns.valid, dut.columns.payload, dut.busy)
                if valid and not was_valid:
                    offered.append(cycle)
                if valid and ready:
                    entries.append((payload.col, payload.value, payload.end))
                    taken.append(cycle)
                was_valid = valid and not ready
                cycle += 1
                if entries and entries[-1][2]:
                    break
                assert cycle < 10 * config.x_depth, "the detector did not finish"
            ctx.set(dut.columns.ready, 0)
            await ctx.tick()
            assert not ctx.get(dut.busy)
            results.append((entries, offered, taken))

    simulate(harness, bench)
    return results


def check(config, x, scans, results, *, timing):
    for (x_base, count), (entries, offered, _taken) in zip(scans, results, strict=True):
        plan = steps(config, x, x_base, count)
        columns = [s for s in plan if s is not None]
        assert entries == [(j, v, 0) for j, v in columns] + [(0, 0, 1)]
        if not timing:
            continue
        # Step k of an unstalled detector is cycle 3 + k, its entry is offered
        # from the next cycle; end is one more step (cycle 1 without windows).
        expected, cycle = [], 3 if plan else 1
        for s in plan:
            if s is not None:
                expected.append(cycle + 1)
            cycle += 1
        expected.append(cycle + 1)
        assert offered == expected


CONFIGS = [
    AcceleratorConfig(pes=4, value_width=16, x_depth=256),                   # 8 banks
    AcceleratorConfig(pes=1, value_width=8, acc_width=16, x_depth=16, x_banks=1),
    AcceleratorConfig(pes=2, value_width=8, acc_width=16, x_depth=16, x_banks=16),
    AcceleratorConfig(pes=32, value_width=16, x_depth=1024),                 # 64 banks
]


@pytest.mark.parametrize("config", CONFIGS, ids=["b8", "b1", "b16", "b64"])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.3, 1.0])
def test_entries_and_timing(config, density):
    rng = random.Random(int(density * 100) + config.x_banks)
    x = [(rng.randint(config.value_min, config.value_max) or 1) if rng.random() < density
         else 0 for _ in range(config.x_depth)]
    d = config.x_depth
    scans = [(0, d), (rng.randrange(d), 0), (3, min(d - 3, 40)), (d - 5, 5),
             (rng.randrange(d // 2), rng.randrange(1, d // 2))]
    results = run(config, x, scans)
    check(config, x, scans, results, timing=True)


@pytest.mark.parametrize("config", CONFIGS[:2], ids=["b8", "b1"])
def test_output_stalls(config):
    rng = random.Random(7)
    x = [rng.choice([0, 0, 0, 1, -3, config.value_max]) for _ in range(config.x_depth)]
    d = config.x_depth
    scans = [(0, d), (5, d - 9), (d - 1, 1)]
    results = run(config, x, scans, stall=0.6, seed=3)
    check(config, x, scans, results, timing=False)
    # A held entry blocks every step (zero windows too): after an entry is
    # taken in cycle d, the next step is d and its entry is offered from d + 1.
    for (x_base, count), (_entries, offered, taken) in zip(scans, results):
        plan = steps(config, x, x_base, count)
        cycle = 3 if plan else 1
        k = 0
        expected = []
        for s in plan:
            if s is not None:
                expected.append(cycle + 1)
                cycle = taken[k]
                k += 1
            else:
                cycle += 1
        expected.append(cycle + 1)
        assert offered == expected


def test_column_queue_order_and_level():
    config = AcceleratorConfig(pes=1, x_depth=64)
    dut = ColumnQueue(config, depth=4)
    items = [{"col": i, "value": i - 20, "end": int(i == 29)} for i in range(30)]
    got = {}

    async def producer(ctx):
        await send(ctx, dut.input, items, stall=0.3, rng=random.Random(1))

    async def consumer(ctx):
        received = await receive(ctx, dut.output, len(items), stall=0.6, rng=random.Random(2))
        got["items"] = [{"col": r.col, "value": r.value, "end": r.end} for r in received]

    async def monitor(ctx):
        async for _, _, level, ready in ctx.tick().sample(dut.level, dut.input.ready):
            assert level <= 4 and ready == (level != 4)

    simulate(dut, producer, consumer, processes=[monitor])
    assert got["items"] == items
    with pytest.raises(ValueError):
        ColumnQueue(config, depth=3)
