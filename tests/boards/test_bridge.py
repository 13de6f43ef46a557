"""UART-to-AXI4-Lite bridge in the Amaranth simulator.

The bridge's byte streams are driven directly (the UART is tested on its
own), with random stalls on both streams and on every AXI4-Lite channel of a
memory model that answers SLVERR in a hole of the address space.
"""

import gc
import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from zeroskip.boards import protocol as p
from zeroskip.boards.bridge import UartAxiBridge, crc16_step

TIMEOUT = 48
#: Addresses (bytes) from here on answer SLVERR.
HOLE = 0x0100_0000


class Harness:
    """The bridge, an AXI4-Lite memory model and a byte sink, with random stalls."""

    def __init__(self, *, stall=0.3, seed=0, timeout_cycles=TIMEOUT):
        self.dut = UartAxiBridge(timeout_cycles=timeout_cycles)
        self.rng = random.Random(seed)
        self.stall = stall
        self.memory = {}
        #: Every write the AXI side accepted, in order: (addr, data).
        self.writes = []
        self.reads = []
        self.received = bytearray()

    def stalled(self):
        return self.stall and self.rng.random() < self.stall

    async def axi(self, ctx):
        axil = self.dut.axil
        while True:
            ready = not self.stalled()
            ctx.set(axil.awready, ready)
            ctx.set(axil.wready, ready)
            ctx.set(axil.arready, not self.stalled())
            _, _, awvalid, wvalid, awaddr, wdata, arvalid, araddr, arready = \
                await ctx.tick().sample(axil.awvalid, axil.wvalid, axil.awaddr, axil.wdata,
                                        axil.arvalid, axil.araddr, axil.arready)
            assert not (awvalid ^ wvalid), "the bridge offers address and data together"
            if awvalid and ready:
                ctx.set(axil.awready, 0)
                ctx.set(axil.wready, 0)
                error = awaddr >= HOLE
                if not error:
                    self.memory[awaddr] = wdata
                    self.writes.append((awaddr, wdata))
                await self._respond(ctx, axil.bvalid, axil.bready, axil.bresp, error)
            elif arvalid and arready:
                ctx.set(axil.arready, 0)
                error = araddr >= HOLE
                self.reads.append(araddr)
                ctx.set(axil.rdata, 0 if error else self.memory.get(araddr, araddr ^ 0xDEAD0000))
                await self._respond(ctx, axil.rvalid, axil.rready, axil.rresp, error)

    async def _respond(self, ctx, valid, ready, resp, error):
        while self.stalled():
            await ctx.tick()
        ctx.set(resp, 2 if error else 0)
        ctx.set(valid, 1)
        await ctx.tick().until(ready)
        ctx.set(valid, 0)

    async def sink(self, ctx):
        tx = self.dut.tx
        while True:
            ready = not self.stalled()
            ctx.set(tx.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(tx.valid, tx.payload)
            if valid and ready:
                self.received.append(payload)

    async def send(self, ctx, data):
        rx = self.dut.rx
        for byte in data:
            while self.stalled():
                ctx.set(rx.valid, 0)
                await ctx.tick()
            ctx.set(rx.payload, byte)
            ctx.set(rx.valid, 1)
            await ctx.tick().until(rx.ready)
        ctx.set(rx.valid, 0)

    async def response(self, ctx, *, max_cycles=20_000):
        """Wait for one whole response frame and return its parsed fields."""
        for _ in range(max_cycles):
            frame = self._take_frame()
            if frame is not None:
                return p.parse_response(frame)
            await ctx.tick()
        raise AssertionError(f"no response; received {bytes(self.received).hex()}")

    def _take_frame(self):
        data = self.received
        if len(data) < p.RESPONSE_HEADER:
            return None
        assert data[0] == p.SYNC_RSP, bytes(data).hex()
        length = p.RESPONSE_HEADER + 4 * data[2] + p.RESPONSE_TRAILER
        if len(data) < length:
            return None
        frame = bytes(data[:length])
        del data[:length]
        return frame

    async def quiet(self, ctx, cycles):
        await ctx.tick().repeat(cycles)
        assert not self.received, f"unexpected bytes {bytes(self.received).hex()}"

    def run(self, testbench):
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(self.axi, background=True)
        sim.add_testbench(self.sink, background=True)
        sim.add_testbench(testbench)
        sim.run()


def command(op, seq, addr, **kwargs):
    return p.encode_command(op, seq, addr, **kwargs)


def test_crc_step_matches_protocol():
    crc, byte, out = Signal(16), Signal(8), Signal(16)
    m = Module()
    m.d.comb += out.eq(crc16_step(crc, byte))
    rng = random.Random(5)
    cases = [(rng.getrandbits(16), rng.getrandbits(8)) for _ in range(200)]

    async def testbench(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == p.crc16_update(c, b)

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_ping_write_read_bursts(stall):
    h = Harness(stall=stall, seed=1)
    rng = random.Random(2)
    words = [rng.getrandbits(32) for _ in range(p.MAX_BURST)]

    async def testbench(ctx):
        await h.send(ctx, command(p.OP_PING, 7, 0))
        assert await h.response(ctx) == (7, p.STATUS_OK, 0, [p.ping_word()])
        await h.send(ctx, command(p.OP_WRITE, 8, 0x200, words=words))
        assert await h.response(ctx) == (8, p.STATUS_OK, 0, [])
        await h.send(ctx, command(p.OP_WRITE, 9, 0x00AB_4560, words=[0xCAFEF00D]))
        assert await h.response(ctx) == (9, p.STATUS_OK, 0, [])
        await h.send(ctx, command(p.OP_READ, 10, 0x200, count=p.MAX_BURST))
        assert await h.response(ctx) == (10, p.STATUS_OK, 0, words)
        await h.send(ctx, command(p.OP_READ, 11, 0x00AB_4560, count=1))
        assert await h.response(ctx) == (11, p.STATUS_OK, 0, [0xCAFEF00D])

    h.run(testbench)
    assert h.writes == [(0x200 + 4 * i, w) for i, w in enumerate(words)] + \
        [(0x00AB_4560, 0xCAFEF00D)]


def test_slverr_reports_first_failing_word():
    h = Harness(stall=0.3, seed=3)

    async def testbench(ctx):
        # Words 2 and 3 fall into the hole: the write stops at word 2.
        await h.send(ctx, command(p.OP_WRITE, 1, HOLE - 8, words=[1, 2, 3, 4]))
        assert await h.response(ctx) == (1, p.STATUS_SLVERR, 2, [])
        await h.send(ctx, command(p.OP_READ, 2, HOLE - 4, count=3))
        seq, status, index, words = await h.response(ctx)
        assert (seq, status, index) == (2, p.STATUS_SLVERR, 1)
        assert words == [2, 0, 0]
        # An address beyond the 28-bit space never reaches the bus.
        await h.send(ctx, command(p.OP_WRITE, 3, 0x1000_0000, words=[5]))
        assert await h.response(ctx) == (3, p.STATUS_SLVERR, 0, [])

    h.run(testbench)
    assert h.writes == [(HOLE - 8, 1), (HOLE - 4, 2)]
    assert h.reads == [HOLE - 4, HOLE, HOLE + 4]


def test_retransmitted_write_is_applied_once():
    h = Harness(stall=0.4, seed=4)

    async def testbench(ctx):
        frame = command(p.OP_WRITE, 42, 0x40, words=[0x11, 0x22])
        await h.send(ctx, frame)
        assert await h.response(ctx) == (42, p.STATUS_OK, 0, [])
        # The acknowledgement was lost: the host sends the same frame again.
        await h.send(ctx, frame)
        assert await h.response(ctx) == (42, p.STATUS_OK | p.STATUS_REPLAYED, 0, [])
        await h.send(ctx, frame)
        assert await h.response(ctx) == (42, p.STATUS_OK | p.STATUS_REPLAYED, 0, [])
        # A failed write replays its failure too.
        failing = command(p.OP_WRITE, 43, HOLE, words=[9])
        await h.send(ctx, failing)
        assert await h.response(ctx) == (43, p.STATUS_SLVERR, 0, [])
        await h.send(ctx, failing)
        assert await h.response(ctx) == (43, p.STATUS_SLVERR | p.STATUS_REPLAYED, 0, [])
        # A read in between makes the next write with the same number new again.
        await h.send(ctx, command(p.OP_READ, 44, 0x40, count=2))
        assert await h.response(ctx) == (44, p.STATUS_OK, 0, [0x11, 0x22])
        await h.send(ctx, command(p.OP_READ, 44, 0x40, count=2))
        assert await h.response(ctx) == (44, p.STATUS_OK, 0, [0x11, 0x22])
        await h.send(ctx, command(p.OP_WRITE, 45, 0x40, words=[0x33]))
        assert await h.response(ctx) == (45, p.STATUS_OK, 0, [])

    h.run(testbench)
    assert h.writes == [(0x40, 0x11), (0x44, 0x22), (0x40, 0x33)]


@pytest.mark.parametrize("seed", range(4))
def test_corrupted_frames_are_rejected(seed):
    h = Harness(stall=0.3, seed=seed)
    rng = random.Random(seed)

    async def testbench(ctx):
        for attempt in range(6):
            frame = bytearray(command(p.OP_WRITE, attempt, 0x80, words=[rng.getrandbits(32)
                                                                       for _ in range(3)]))
            position = rng.randrange(1, len(frame))
            frame[position] ^= 1 << rng.randrange(8)
            await h.send(ctx, bytes(frame))
            seq, status, index, words = await h.response(ctx)
            assert status == p.STATUS_NAK and words == []

    h.run(testbench)
    assert h.writes == []


def test_truncated_duplicated_and_garbage_frames():
    h = Harness(stall=0.2, seed=9)

    async def testbench(ctx):
        frame = command(p.OP_WRITE, 1, 0x10, words=[1, 2, 3])
        # Truncated: the bridge times out and answers NAK, nothing is written.
        await h.send(ctx, frame[:-3])
        assert (await h.response(ctx))[1] == p.STATUS_NAK
        # A duplicated byte in the middle: checksum error, NAK.
        await h.send(ctx, frame[:9] + frame[8:])
        assert (await h.response(ctx))[1] == p.STATUS_NAK
        # An unknown op and a bad count are dropped until the line is quiet.
        await h.send(ctx, bytes([p.SYNC_CMD, 0x77, 1, 1, 0, 0, 0, 0, 9, 9]))
        assert (await h.response(ctx))[1] == p.STATUS_NAK
        await h.send(ctx, command(p.OP_READ, 1, 0, count=p.MAX_BURST + 1))
        assert (await h.response(ctx))[1] == p.STATUS_NAK
        await h.send(ctx, command(p.OP_READ, 1, 0, count=0))
        assert (await h.response(ctx))[1] == p.STATUS_NAK
        # Line noise without a sync byte is ignored.
        await h.send(ctx, bytes([0x00, 0xFF, 0x13]))
        await h.quiet(ctx, 4 * TIMEOUT)
        # The link still works, and the write lands once.
        await h.send(ctx, frame)
        assert await h.response(ctx) == (1, p.STATUS_OK, 0, [])
        # A duplicated last byte after a good frame is dropped harmlessly.
        await h.send(ctx, command(p.OP_READ, 2, 0x10, count=3)[:-1])
        await h.send(ctx, command(p.OP_READ, 2, 0x10, count=3)[-1:] * 2)
        assert await h.response(ctx) == (2, p.STATUS_OK, 0, [1, 2, 3])
        await h.quiet(ctx, 4 * TIMEOUT)

    h.run(testbench)
    assert h.writes == [(0x10, 1), (0x14, 2), (0x18, 3)]


def test_gap_shorter_than_timeout_is_accepted():
    h = Harness(stall=0.0, seed=0)

    async def testbench(ctx):
        frame = command(p.OP_WRITE, 5, 0x20, words=[7])
        for byte in frame:
            await h.send(ctx, bytes([byte]))
            await ctx.tick().repeat(TIMEOUT - 4)
        assert await h.response(ctx) == (5, p.STATUS_OK, 0, [])

    h.run(testbench)
    assert h.writes == [(0x20, 7)]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_bad_parameters():
    with pytest.raises(TypeError, match=r"^Timeout must be a positive integer number of cycles, "
                                        r"not 0$"):
        UartAxiBridge(timeout_cycles=0)
    with pytest.raises(TypeError, match=r"^Address width must be an integer from 3 to 32, "
                                        r"not 40$"):
        UartAxiBridge(timeout_cycles=10, addr_width=40)
    gc.collect()  # report the half-built components while the warning is ignored


def test_long_timeout_is_prescaled():
    # 1000 cycles: counted in ticks of 4 cycles (an 8-bit counter).
    h = Harness(stall=0.0, timeout_cycles=1000)

    async def testbench(ctx):
        frame = command(p.OP_WRITE, 5, 0x20, words=[7])
        for byte in frame:
            await h.send(ctx, bytes([byte]))
            await ctx.tick().repeat(950)
        assert await h.response(ctx) == (5, p.STATUS_OK, 0, [])
        await h.send(ctx, frame[:5])
        await h.quiet(ctx, 990)
        assert (await h.response(ctx, max_cycles=30))[1] == p.STATUS_NAK

    h.run(testbench)
    assert h.writes == [(0x20, 7)]
