"""The DMA engine: every word of every load once, in order, at its lane and
address, under random stalls on the read-request and read-data streams; the
operand check equals the ISA model's; the queue's bound and ``flush``."""

import random

import pytest

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import LOAD_REGIONS, LoadRegion, MemoryMap
from zeroskip.core.timing import LOAD_QUEUE
from zeroskip.firmware.formats.base import DescriptorFault
from zeroskip.firmware.operands import check_load
from zeroskip.hdl.dma import DmaEngine
from zeroskip.sim.streams import receive, send, simulate

CONFIG = AcceleratorConfig(pes=3, nz_depth=64, row_depth=16, imem_depth=16, x_depth=64,
                           ext_words=1024, ext_latency=4)
DEPTHS = {region: MemoryMap(CONFIG).depth(window) for region, window in LOAD_REGIONS.items()}


def random_loads(rng, n):
    loads = []
    for _ in range(n):
        region = rng.choice(list(LoadRegion))
        count = rng.randint(1, DEPTHS[region])
        loads.append({"region": region, "dst_base": rng.randint(0, DEPTHS[region] - count),
                      "count": count, "src": rng.randint(0, CONFIG.ext_words - 3 * count)})
    return loads


def expected_writes(loads, ext):
    writes = []
    for load in loads:
        for j in range(CONFIG.pes * load["count"]):
            lane, i = divmod(j, load["count"])
            writes.append((load["region"], lane, load["dst_base"] + i, ext[load["src"] + j]))
    return writes


async def push_loads(ctx, dut, loads, rng, gap=0.5):
    for load in loads:
        while rng.random() < gap:
            await ctx.tick()
        await ctx.tick().until(~dut.full)
        ctx.set(dut.args, load)
        ctx.set(dut.push, 1)
        await ctx.tick()
        ctx.set(dut.push, 0)


def memory(dut, ext, requests, *, stall, rng):
    """The external memory's testbench: takes ``requests`` read requests and
    answers each with its words, stalling both streams at random."""
    async def bench(ctx):
        for _ in range(requests):
            request, = await receive(ctx, dut.read_req, 1, stall=stall, rng=rng)
            addr, length = int(request.addr), int(request.len)
            await send(ctx, dut.read_data, ext[addr:addr + length], stall=stall, rng=rng)
    return bench


def monitor(dut, writes, held):
    async def process(ctx):
        async for _clk, _rst, en, region, lane, addr, data, busy, full in ctx.tick().sample(
                dut.wr_en, dut.wr_region, dut.wr_lane, dut.wr_addr, dut.wr_data, dut.busy,
                dut.full):
            if en:
                writes.append((LoadRegion(region), lane, addr, data))
            held.append((busy, full))
    return process


@pytest.mark.parametrize("seed", range(4))
def test_every_word_lands_once_in_order_under_stalls(seed):
    rng = random.Random(seed)
    dut = DmaEngine(CONFIG)
    ext = [rng.randrange(1 << 32) for _ in range(CONFIG.ext_words)]
    loads = random_loads(rng, 8)
    writes, held = [], []
    expected = expected_writes(loads, ext)

    async def producer(ctx):
        await push_loads(ctx, dut, loads, random.Random(seed + 1), gap=0.2)
        while len(writes) < len(expected):
            await ctx.tick()
        await ctx.tick()
        assert not ctx.get(dut.busy)

    simulate(dut, producer, memory(dut, ext, len(loads), stall=0.4,
                                   rng=random.Random(seed + 2)),
             processes=[monitor(dut, writes, held)])
    assert writes == expected
    assert any(full for _, full in held)        # the queue did fill up


def test_the_queue_holds_load_queue_loads_until_the_last_word_is_written():
    dut = DmaEngine(CONFIG)
    ext = list(range(CONFIG.ext_words))
    loads = [{"region": LoadRegion.NZ, "dst_base": 0, "count": 2, "src": 10 * k}
             for k in range(LOAD_QUEUE)]
    trace = []

    async def producer(ctx):
        for load in loads:
            assert not ctx.get(dut.full)
            ctx.set(dut.args, load)
            ctx.set(dut.push, 1)
            await ctx.tick()
        ctx.set(dut.push, 0)
        assert ctx.get(dut.full) and ctx.get(dut.busy)
        await ctx.tick().repeat(200)

    async def record(ctx):
        async for _clk, _rst, *sample in ctx.tick().sample(dut.full, dut.busy, dut.wr_en):
            trace.append(sample)

    simulate(dut, producer, memory(dut, ext, len(loads), stall=0.0, rng=random.Random(0)),
             processes=[record])
    # Full until the first load's last word is written; busy until the last one's.
    filled = next(i for i, (full, _, _) in enumerate(trace) if full)
    first_free = next(i for i in range(filled, len(trace)) if not trace[i][0])
    written = [i for i, (_, _, en) in enumerate(trace) if en]
    assert len(written) == LOAD_QUEUE * CONFIG.pes * 2
    assert first_free == written[CONFIG.pes * 2 - 1] + 1
    idle = next(i for i in range(filled, len(trace)) if not trace[i][1])
    assert idle == written[-1] + 1


def test_flush_drops_the_queued_loads_and_finishes_the_transfer():
    dut = DmaEngine(CONFIG)
    ext = list(range(CONFIG.ext_words))
    loads = [{"region": LoadRegion.BIAS, "dst_base": 1, "count": 3, "src": 100 * k}
             for k in range(3)]
    writes, held = [], []

    async def producer(ctx):
        for load in loads:
            ctx.set(dut.args, load)
            ctx.set(dut.push, 1)
            await ctx.tick()
        ctx.set(dut.push, 0)
        await ctx.tick().until(dut.read_data.valid)
        ctx.set(dut.flush, 1)
        await ctx.tick().until(~dut.busy)
        ctx.set(dut.flush, 0)
        for _ in range(20):
            assert not ctx.get(dut.read_req.valid)
            await ctx.tick()

    simulate(dut, producer, memory(dut, ext, 1, stall=0.3, rng=random.Random(5)),
             processes=[monitor(dut, writes, held)])
    assert writes == expected_writes(loads[:1], ext)


def test_the_operand_check_is_the_models():
    rng = random.Random(7)
    dut = DmaEngine(CONFIG)
    cases = []
    for _ in range(300):
        region = rng.choice(list(LoadRegion))
        depth = DEPTHS[region]
        count = rng.choice([0, 1, depth - 1, depth, depth + 1, rng.randrange(1 << 16)])
        dst = rng.choice([0, depth - count if count <= depth else 0, rng.randrange(1 << 16)])
        src = rng.choice([0, max(CONFIG.ext_words - 3 * count, 0),
                          CONFIG.ext_words - 3 * count + 1, rng.randrange(1 << 26)])
        cases.append({"region": region, "dst_base": dst, "count": count, "src": src % (1 << 26)})

    async def bench(ctx):
        for args in cases:
            ctx.set(dut.args, args)
            await ctx.delay(1e-9)
            try:
                check_load(args, CONFIG)
                expected = 0
            except DescriptorFault:
                expected = 1
            assert ctx.get(dut.args_error) == expected, args

    simulate(dut, bench)


def test_the_engine_needs_an_external_memory():
    with pytest.raises(ValueError) as info:
        DmaEngine(AcceleratorConfig(pes=2))
    assert str(info.value) == "the DMA engine needs an external memory (ext_words > 0)"
