"""The skid buffer: every word once and in order under random stalls on both
sides, a registered ``input.ready``, and no cycle lost while the consumer is
always ready."""

import random

import pytest
from amaranth.hdl import unsigned

from zeroskip.hdl.skid import SkidBuffer
from zeroskip.sim.streams import receive, send, simulate


@pytest.mark.parametrize("seed", range(4))
def test_words_pass_once_and_in_order_under_stalls(seed):
    dut = SkidBuffer(unsigned(12))
    words = [random.Random(seed).randrange(1 << 12) for _ in range(200)]
    got = []

    async def producer(ctx):
        await send(ctx, dut.input, words, stall=0.3, rng=random.Random(seed + 100))

    async def consumer(ctx):
        got.extend(await receive(ctx, dut.output, len(words), stall=0.4,
                                 rng=random.Random(seed + 200)))

    async def ready_is_registered(ctx):
        # input.ready is low exactly in the cycles after the consumer refused
        # an offered word that was not already held (so it depends on no
        # input of the same cycle).
        held = False
        async for _clk, _rst, in_ready, in_valid, out_ready in ctx.tick().sample(
                dut.input.ready, dut.input.valid, dut.output.ready):
            assert in_ready == (not held)
            held = (held or in_valid) and not out_ready

    simulate(dut, producer, consumer, processes=[ready_is_registered])
    assert got == words


def test_no_bubble_when_the_consumer_is_always_ready():
    dut = SkidBuffer(unsigned(8))
    words = list(range(50))
    cycles = []

    async def producer(ctx):
        await send(ctx, dut.input, words)

    async def consumer(ctx):
        ctx.set(dut.output.ready, 1)
        count = 0
        async for _clk, _rst, valid in ctx.tick().sample(dut.output.valid):
            cycles.append(valid)
            count += valid
            if count == len(words):
                break

    simulate(dut, producer, consumer)
    assert cycles == [1] * len(words)
