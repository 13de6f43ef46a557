"""ProcessingElement: row sums against numpy, mac/skip/busy counts, overflow."""

import random

import numpy as np
import pytest

from zeroskip.core.config import AcceleratorConfig
from zeroskip.hdl.pe import ProcessingElement
from zeroskip.sim.streams import receive, send, simulate

CONFIG16 = AcceleratorConfig(pes=1, value_width=16, acc_width=32, row_depth=64)
CONFIG8 = AcceleratorConfig(pes=1, value_width=8, acc_width=16, row_depth=64)


def tokens_of(rows):
    """PE inputs for ``rows`` (lists of (a, x); an empty list is an empty row)."""
    out = []
    for i, products in enumerate(rows):
        if not products:
            out.append({"a": 0, "x": 0, "row": i, "last": 1, "empty": 1})
        for j, (a, x) in enumerate(products):
            out.append({"a": a, "x": x, "row": i, "last": int(j == len(products) - 1),
                        "empty": 0})
    return out


def expected_of(config, rows):
    """(row, sum, overflow) per row; the sum wraps to acc_width like the hardware's."""
    results = []
    for i, products in enumerate(rows):
        s, overflow = 0, False
        for a, x in products:
            s += a * x
            overflow |= not config.acc_min <= s <= config.acc_max
        wrapped = (s - config.acc_min) % (1 << config.acc_width) + config.acc_min
        results.append((i % config.row_depth, wrapped, int(overflow)))
    return results


def run(config, rows, *, in_stall=0.3, out_stall=0.3, seed=0):
    dut = ProcessingElement(config)
    tokens = tokens_of(rows)
    result = {}
    counts = {"mac": 0, "skip": 0, "busy": 0, "cycles": 0}

    async def producer(ctx):
        await send(ctx, dut.input, tokens, stall=in_stall, rng=random.Random(seed))

    async def consumer(ctx):
        got = await receive(ctx, dut.output, len(rows), stall=out_stall,
                            rng=random.Random(seed + 100))
        result["results"] = [(r.row, r.sum, r.overflow) for r in got]
        for _ in range(4):
            await ctx.tick()
        result["idle"] = ctx.get(dut.idle)
        result["valid"] = ctx.get(dut.output.valid)

    async def monitor(ctx):
        async for _, _, mac, skip, busy in ctx.tick().sample(dut.mac, dut.skip, dut.busy):
            counts["mac"] += mac
            counts["skip"] += skip
            counts["busy"] += busy
            counts["cycles"] += 1

    simulate(dut, producer, consumer, processes=[monitor])
    return result, counts


@pytest.mark.parametrize("config", [CONFIG16, CONFIG8], ids=["v16", "v8"])
@pytest.mark.parametrize("seed", range(3))
def test_random_rows(config, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(40):
        length = int(rng.integers(0, 7))
        a = rng.integers(config.value_min, config.value_max + 1, length)
        x = rng.integers(config.value_min, config.value_max + 1, length)
        # Plenty of zero operands on either side.
        a[rng.random(length) < 0.25] = 0
        x[rng.random(length) < 0.25] = 0
        rows.append(list(zip(a.tolist(), x.tolist(), strict=True)))
    result, counts = run(config, rows, seed=seed)

    expected = expected_of(config, rows)
    # numpy cross-check of the sums of the rows that do not overflow.
    for (_, s, overflow), products in zip(expected, rows, strict=True):
        if products and not overflow:
            a, x = np.array(products, dtype=np.int64).T
            assert s == int(a @ x)
    assert result["results"] == expected
    flat = [p for products in rows for p in products]
    assert counts["mac"] == sum(1 for a, x in flat if a and x)
    assert counts["skip"] == sum(1 for a, x in flat if not (a and x))
    assert counts["busy"] == len(flat)
    assert result["idle"] and not result["valid"]


def test_one_input_per_cycle():
    config = CONFIG16
    rows = [[(1, 2)] * (i % 4) for i in range(30)]
    dut = ProcessingElement(config)
    taken = []

    async def producer(ctx):
        await send(ctx, dut.input, tokens_of(rows))

    async def consumer(ctx):
        ctx.set(dut.output.ready, 1)
        got = 0
        cycle = 0
        while got < len(rows):
            _, _, valid, in_valid, in_ready = await ctx.tick().sample(
                dut.output.valid, dut.input.valid, dut.input.ready)
            got += valid
            if in_valid and in_ready:
                taken.append(cycle)
            cycle += 1

    simulate(dut, producer, consumer)
    assert len(taken) == len(tokens_of(rows))
    assert taken[-1] - taken[0] == len(taken) - 1


@pytest.mark.parametrize("config", [CONFIG16, CONFIG8], ids=["v16", "v8"])
def test_overflow_edges(config):
    lo, hi = config.value_min, config.value_max
    if config.acc_width == 16:
        top = [(hi, hi), (hi, hi), (hi, 4), (1, 1)]             # 32767
        bottom = [(lo, hi), (lo, hi), (lo, 2)]                   # -32768
    else:
        top = [(lo, lo), (hi, hi), (hi, 2)]                      # 2**31 - 1
        bottom = [(lo, hi), (lo, hi), (lo, 2)]                   # -2**31
    rows = [
        top,                                  # exactly acc_max: no overflow
        bottom,                               # exactly acc_min: no overflow
        top + [(1, 1)],                       # one above acc_max
        bottom + [(-1, 1)],                   # one below acc_min
        top + [(1, 1), (-1, 1), (-1, 1)],     # back in range: overflow stays set
        [],                                   # the next rows are clean again
        [(hi, hi)],
    ]
    expected = expected_of(config, rows)
    assert expected[0][1] == config.acc_max and expected[1][1] == config.acc_min
    assert [e[2] for e in expected] == [0, 0, 1, 1, 1, 0, 0]
    result, _ = run(config, rows)
    assert result["results"] == expected


def test_clear_drops_partial_row():
    config = CONFIG16
    dut = ProcessingElement(config)
    result = {}

    async def bench(ctx):
        ctx.set(dut.output.ready, 1)
        # A partial row (no last), then clear, then a full row.
        await send(ctx, dut.input, [{"a": 100, "x": 100, "row": 3, "last": 0, "empty": 0}])
        await ctx.tick()
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await send(ctx, dut.input, [{"a": 2, "x": 3, "row": 0, "last": 1, "empty": 0}])
        for _ in range(5):
            _, _, valid, payload = await ctx.tick().sample(dut.output.valid, dut.output.payload)
            if valid:
                result["got"] = (payload.row, payload.sum, payload.overflow)

    simulate(dut, bench)
    assert result["got"] == (0, 6, 0)
