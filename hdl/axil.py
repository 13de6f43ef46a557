"""AXI4-Lite slave: the host port of the accelerator.

:class:`AxiLiteSlave` turns AXI4-Lite transactions into accesses of a simple
internal register bus (:class:`RegisterBusSignature`): one write strobe with
its error answer in the same cycle, or one read strobe answered
:data:`READ_LATENCY` cycles later. One transaction is served at a time; a
write waiting on both its address and data channels is taken before a read.
"""

from amaranth import Module, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["READ_LATENCY", "AxiLiteSignature", "RegisterBusSignature", "AxiLiteSlave", "Resp"]

#: Cycles from a register bus read strobe to the cycle its ``rdata`` and
#: ``err`` are sampled: the memory read and a register at each memory's
#: output, before any multiplexer of the address decode.
READ_LATENCY = 2


class Resp(enum.Enum, shape=2):
    OKAY = 0
    SLVERR = 2


class AxiLiteSignature(wiring.Signature):
    """An AXI4-Lite interface, from the manager's side (32-bit data).

    Parameters
    ----------
    addr_width : int
        Width of ``awaddr`` and ``araddr`` in bits, 3 to 64.
    """

    def __init__(self, *, addr_width):
        if not isinstance(addr_width, int) or not 3 <= addr_width <= 64:
            raise TypeError(f"Address width must be an integer from 3 to 64, not {addr_width!r}")
        self.addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(Resp), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(Resp), "rvalid": In(1), "rready": Out(1),
        })


class RegisterBusSignature(wiring.Signature):
    """The internal host bus, from the initiator's side.

    ``addr`` is a byte address. A write is ``we`` with ``wdata``, taken in
    the first cycle in which ``wait`` is low (``we`` and ``wdata`` are held
    until then); ``err`` in that cycle rejects it. A read is ``re`` for one
    cycle; ``rdata`` and ``err`` are sampled :data:`READ_LATENCY` cycles
    later, or in the first cycle after that in which ``wait`` is low
    (``addr`` is held until then). Only the external memory's port waits.

    Parameters
    ----------
    addr_width : int
        Width of ``addr`` in bits.
    """

    def __init__(self, *, addr_width):
        super().__init__({
            "addr": Out(addr_width), "wdata": Out(32), "we": Out(1), "re": Out(1),
            "rdata": In(32), "err": In(1), "wait": In(1),
        })


class AxiLiteSlave(wiring.Component):
    """Bridge from an AXI4-Lite slave port to the internal register bus.

    Parameters
    ----------
    addr_width : int
        Address width of both sides, in bits.

    Attributes
    ----------
    axil : In(AxiLiteSignature)
        The AXI4-Lite port (byte addresses; ``wstrb`` must be all ones, a
        partial write answers ``SLVERR``).
    bus : Out(RegisterBusSignature)
        The register bus towards the accelerator.
    """

    def __init__(self, *, addr_width):
        if not isinstance(addr_width, int) or not 3 <= addr_width <= 64:
            raise TypeError(f"Address width must be an integer from 3 to 64, not {addr_width!r}")
        super().__init__({
            "axil": In(AxiLiteSignature(addr_width=addr_width)),
            "bus": Out(RegisterBusSignature(addr_width=addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        axil, bus = self.axil, self.bus

        addr = Signal.like(bus.addr)
        wdata = Signal(32)
        resp_err = Signal()
        rdata = Signal(32)
        m.d.comb += [bus.addr.eq(addr), bus.wdata.eq(wdata)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(axil.awvalid & axil.wvalid):
                    m.d.comb += [axil.awready.eq(1), axil.wready.eq(1)]
                    m.d.sync += [addr.eq(axil.awaddr), wdata.eq(axil.wdata)]
                    m.d.sync += resp_err.eq(axil.wstrb != 0b1111)
                    m.next = "WRITE"
                with m.Elif(axil.arvalid):
                    m.d.comb += axil.arready.eq(1)
                    m.d.sync += addr.eq(axil.araddr)
                    m.next = "READ"
            with m.State("WRITE"):
                m.d.comb += bus.we.eq(~resp_err)
                with m.If(resp_err | ~bus.wait):
                    m.d.sync += resp_err.eq(resp_err | bus.err)
                    m.next = "WRITE_RESP"
            with m.State("WRITE_RESP"):
                m.d.comb += [
                    axil.bvalid.eq(1),
                    axil.bresp.eq(Resp.OKAY),
                ]
                with m.If(resp_err):
                    m.d.comb += axil.bresp.eq(Resp.SLVERR)
                with m.If(axil.bready):
                    m.next = "IDLE"
            # READ strobes the bus; READ_WAIT_<i> wait for the answer.
            waits = [f"READ_WAIT_{i}" for i in range(1, READ_LATENCY)]
            for state, after in zip(["READ", *waits], [*waits, "READ_DATA"]):
                with m.State(state):
                    if state == "READ":
                        m.d.comb += bus.re.eq(1)
                    m.next = after
            with m.State("READ_DATA"):
                with m.If(~bus.wait):
                    m.d.sync += [rdata.eq(bus.rdata), resp_err.eq(bus.err)]
                    m.next = "READ_RESP"
            with m.State("READ_RESP"):
                m.d.comb += [
                    axil.rvalid.eq(1),
                    axil.rdata.eq(rdata),
                    axil.rresp.eq(Resp.OKAY),
                ]
                with m.If(resp_err):
                    m.d.comb += [axil.rresp.eq(Resp.SLVERR), axil.rdata.eq(0)]
                with m.If(axil.rready):
                    m.next = "IDLE"
        return m
