"""AXI4-Lite slave: transactions reach the register bus; errors answer SLVERR."""

import random

import pytest
from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from zeroskip.core.errors import DeviceError
from zeroskip.hdl.axil import READ_LATENCY, AxiLiteSignature, AxiLiteSlave
from zeroskip.sim.buses import PysimBus
from zeroskip.sim.streams import simulate


class RegisterFile(wiring.Component):
    """16 words at 0x00-0x3C behind the slave; anything else is an error. A
    read answers ``READ_LATENCY`` cycles after its strobe (the memory's word
    registered, as the accelerator's lanes do); before that, ``rdata`` holds
    garbage."""

    axil: In(AxiLiteSignature(addr_width=12))

    def elaborate(self, platform):
        m = Module()
        m.submodules.slave = slave = AxiLiteSlave(addr_width=12)
        wiring.connect(m, wiring.flipped(self.axil), slave.axil)
        m.submodules.mem = mem = memory.Memory(shape=32, depth=16, init=[])
        read, write = mem.read_port(), mem.write_port()
        bus = slave.bus
        in_range = Signal()
        m.d.comb += [
            in_range.eq(bus.addr < 0x40),
            read.addr.eq(bus.addr[2:6]),
            write.addr.eq(bus.addr[2:6]),
            write.data.eq(bus.wdata),
            write.en.eq(bus.we & in_range),
        ]
        rdata = read.data
        for index in range(1, READ_LATENCY):
            delayed = Signal(32, name=f"rdata_{index}")
            m.d.sync += delayed.eq(rdata)
            rdata = delayed
        # Anything but the answer in the cycle the slave samples is wrong data.
        answer = Signal(READ_LATENCY)
        m.d.sync += answer.eq(Cat(bus.re, answer))
        m.d.comb += bus.rdata.eq(Mux(answer[-1], rdata, 0xDEAD_BEEF))
        read_ok = Signal()
        with m.If(bus.re):
            m.d.sync += read_ok.eq(in_range)
        m.d.comb += bus.err.eq(~in_range)
        with m.If(~bus.we):
            m.d.comb += bus.err.eq(~read_ok)
        return m


def run(testbench):
    dut = RegisterFile()

    async def process(ctx):
        await testbench(PysimBus(ctx, dut.axil))

    simulate(dut, process)


def test_words_written_read_back():
    values = [random.Random(i).getrandbits(32) for i in range(16)]
    seen = []

    async def testbench(bus):
        await bus.write(0, values)
        seen.extend(await bus.read(0, 16))
        await bus.write(0x8, [0x1234_5678])
        seen.extend(await bus.read(0x8, 1))

    run(testbench)
    assert seen == values + [0x1234_5678]


@pytest.mark.parametrize("kind", ["read", "write"])
def test_out_of_range_answers_slverr(kind):
    errors = []

    async def testbench(bus):
        try:
            if kind == "read":
                await bus.read(0x100, 1)
            else:
                await bus.write(0x100, [1])
        except DeviceError as error:
            errors.append(str(error))
        # The slave keeps working after an error.
        await bus.write(0x4, [7])
        errors.append(await bus.read(0x4, 1))

    run(testbench)
    assert errors == [f"the accelerator rejected the {kind} of address 0x0000100 (SLVERR)", [7]]


def test_signature_validation():
    with pytest.raises(TypeError, match=r"^Address width must be an integer from 3 to 64, not 2$"):
        AxiLiteSignature(addr_width=2)
