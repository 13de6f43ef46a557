"""UART receiver and transmitter in the Amaranth simulator."""

import gc
import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from zeroskip.boards.uart import UartRx, UartTx, uart_divisor
from zeroskip.sim.streams import receive, send


def loopback(divisor):
    m = Module()
    m.submodules.tx = tx = UartTx(divisor=divisor)
    m.submodules.rx = rx = UartRx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    return m, tx, rx


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_loopback_with_stalls(divisor):
    m, tx, rx = loopback(divisor)
    data = list(range(256)) + [random.Random(divisor).getrandbits(8) for _ in range(40)]
    got = []

    async def producer(ctx):
        await send(ctx, tx.data, data, stall=0.5, rng=random.Random(1))

    async def consumer(ctx):
        # The consumer keeps up (one byte per 10 bit times), so nothing overruns.
        got.extend(await receive(ctx, rx.data, len(data), stall=0.5, rng=random.Random(2)))

    async def monitor(ctx):
        async for _, _, overrun, frame_error in ctx.tick().sample(rx.overrun, rx.frame_error):
            assert not overrun and not frame_error

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert got == data



async def put_bits(ctx, line, bits, divisor, *, skew=0):
    for bit in bits:
        ctx.set(line, bit)
        await ctx.tick().repeat(divisor + skew)
    ctx.set(line, 1)


def frame_bits(byte, stop=1):
    return [0] + [byte >> i & 1 for i in range(8)] + [stop]


@pytest.mark.parametrize("skew", [-1, 0, 1])
def test_receiver_tolerates_clock_skew(skew):
    divisor = 32  # a skew of one cycle per bit is a 3 % baud-rate error
    rx = UartRx(divisor=divisor)
    data = [0x55, 0xA3, 0x00, 0xFF, 0x81]
    got = []

    async def line(ctx):
        for byte in data:
            await put_bits(ctx, rx.rx, frame_bits(byte), divisor, skew=skew)

    async def consumer(ctx):
        got.extend(await receive(ctx, rx.data, len(data)))

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_testbench(consumer)
    sim.run()
    assert got == data


def test_glitch_frame_error_and_overrun():
    divisor = 8
    rx = UartRx(divisor=divisor)
    events = {"frame_error": 0, "overrun": 0}

    async def line(ctx):
        # A two-cycle glitch is not a start bit.
        ctx.set(rx.rx, 0)
        await ctx.tick().repeat(2)
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        # A low stop bit is a framing error; the byte is dropped.
        await put_bits(ctx, rx.rx, frame_bits(0x12, stop=0), divisor)
        await ctx.tick().repeat(2 * divisor)
        # Two good bytes that nobody takes: the second overruns.
        await put_bits(ctx, rx.rx, frame_bits(0x34), divisor)
        await put_bits(ctx, rx.rx, frame_bits(0x56), divisor)
        await ctx.tick().repeat(2 * divisor)
        assert ctx.get(rx.data.valid) and ctx.get(rx.data.payload) == 0x34

    async def monitor(ctx):
        async for _, _, overrun, frame_error in ctx.tick().sample(rx.overrun, rx.frame_error):
            events["overrun"] += overrun
            events["frame_error"] += frame_error

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert events == {"frame_error": 1, "overrun": 1}


def test_transmitter_bit_timing():
    divisor = 5
    tx = UartTx(divisor=divisor)
    samples = []

    async def producer(ctx):
        await send(ctx, tx.data, [0xC5])
        await ctx.tick().repeat(12 * divisor)

    async def monitor(ctx):
        async for _, _, line in ctx.tick().sample(tx.tx):
            samples.append(line)

    sim = Simulator(tx)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    start = samples.index(0)
    bits = samples[start:start + 10 * divisor:divisor]
    assert bits == frame_bits(0xC5)
    assert all(samples[start + i] == samples[start + i - i % divisor] for i in range(10 * divisor))
    assert set(samples[start + 10 * divisor:]) == {1}


def test_divisor():
    assert uart_divisor(clock_hz=12e6, baudrate=1_000_000) == 12
    assert uart_divisor(clock_hz=48e6, baudrate=115200) == 417
    with pytest.raises(ValueError, match=r"^Baud rate 3000000 is too high for a 10 MHz clock: "
                                         r"the UART needs at least 4 clock cycles per bit$"):
        uart_divisor(clock_hz=10e6, baudrate=3_000_000)
    with pytest.raises(ValueError, match=r"^Baud rate 2000000 cannot be made from a 25 MHz clock: "
                                         r"the nearest divisor 12 is 4.2% off$"):
        uart_divisor(clock_hz=25e6, baudrate=2_000_000)
    with pytest.raises(ValueError, match=r"^Clock frequency must be a positive number, not 0$"):
        uart_divisor(clock_hz=0, baudrate=9600)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_bad_divisor():
    with pytest.raises(TypeError, match=r"^Divisor must be an integer of at least 4, not 3$"):
        UartTx(divisor=3)
    with pytest.raises(TypeError, match=r"^Divisor must be an integer of at least 4, not 2.5$"):
        UartRx(divisor=2.5)
    gc.collect()  # report the half-built components while the warning is ignored
