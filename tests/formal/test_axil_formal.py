"""The AXI4-Lite slave, proved against the AXI4-Lite handshake rules with the
manager's side assumed.

Channels are grouped as streams: AW (``awaddr``), W (``wdata``, ``wstrb``)
and AR (``araddr``) are driven by the manager (assumed), B (``bresp``) and R
(``rdata``, ``rresp``) by the slave (asserted). Properties:

- every channel: ``valid`` low during reset, stays high with a stable payload
  until ``ready``;
- one response per request, in order: at most one transaction outstanding,
  a B only after an AW and a W, an R only after an AR;
- every request answered: a write's B is offered within 2 cycles of its AW/W,
  a read's R within ``READ_LATENCY + 2`` cycles of its AR, plus the cycles
  in which the bus asks to ``wait`` (free in every cycle, for up to
  ``MAX_WAIT`` cycles in a row so that the induction closes; the slave sits
  in one state while it waits, so a longer wait is the same);
- the register bus sees each write taken exactly once (address and data of
  the request, held while the bus waits) unless ``wstrb`` is partial, and
  each read exactly once;
- ``bresp`` is SLVERR exactly for a partial ``wstrb`` or a bus error; ``rresp``
  is SLVERR exactly for a bus error (``rdata`` 0 then), else ``rdata`` is the
  bus data ``READ_LATENCY`` cycles after the read strobe, or in the first
  cycle after that without ``wait`` (the bus's ``rdata`` and ``err`` are free
  in every other cycle).
"""

from types import SimpleNamespace

from amaranth.hdl import Assert, Assume, Cat, Mux, Signal

from zeroskip.hdl.axil import READ_LATENCY, AxiLiteSlave, Resp
from zeroskip.sim.formal import mutant, stream_rules

ADDR_WIDTH = 4
#: The longest run of ``wait`` cycles the proof considers.
MAX_WAIT = 3
#: The induction depth: the longest transaction, waits included, and some.
DEPTH = 12


def channel(valid, ready, *payload):
    return SimpleNamespace(valid=valid, ready=ready, payload=Cat(*payload))


def axil_properties(m, dut):
    a, bus = dut.axil, dut.bus
    aw = channel(a.awvalid, a.awready, a.awaddr)
    w = channel(a.wvalid, a.wready, a.wdata, a.wstrb)
    ar = channel(a.arvalid, a.arready, a.araddr)
    b = channel(a.bvalid, a.bready, a.bresp)
    r = channel(a.rvalid, a.rready, a.rdata, a.rresp)
    for name, ch in (("aw", aw), ("w", w), ("ar", ar)):
        stream_rules(m, ch, Assume, name=name)
    for name, ch in (("b", b), ("r", r)):
        stream_rules(m, ch, Assert, name=name)

    def fire(ch):
        return ch.valid & ch.ready

    # Outstanding transactions (shadow counters) and what each must do.
    aw_pending, w_pending, ar_pending = Signal(2), Signal(2), Signal(2)
    m.d.sync += [
        aw_pending.eq(aw_pending + fire(aw) - fire(b)),
        w_pending.eq(w_pending + fire(w) - fire(b)),
        ar_pending.eq(ar_pending + fire(ar) - fire(r)),
    ]
    m.d.comb += [
        Assert(aw_pending + ar_pending <= 1, "one transaction at a time"),
        Assert(aw_pending == w_pending, "AW and W taken together"),
        Assert(~a.bvalid | (aw_pending == 1), "B without a write request"),
        Assert(~a.rvalid | (ar_pending == 1), "R without a read request"),
        Assert(~(fire(aw) | fire(ar)) | ((aw_pending == 0) & (ar_pending == 0)),
               "a request taken while one is outstanding"),
    ]

    waited = Signal(range(MAX_WAIT + 1))
    m.d.sync += waited.eq(Mux(bus.wait, waited + 1, 0))
    m.d.comb += Assume(~bus.wait | (waited < MAX_WAIT))

    # Every request answered within a bound.
    wait = Signal(4)
    with m.If(((aw_pending != 0) & ~a.bvalid) | ((ar_pending != 0) & ~a.rvalid)):
        m.d.sync += wait.eq(wait + 1)
    with m.Else():
        m.d.sync += wait.eq(0)
    with m.If(aw_pending != 0):
        m.d.comb += Assert(wait < 2 + MAX_WAIT,
                           f"write response later than {2 + MAX_WAIT} cycles")
    with m.If(ar_pending != 0):
        m.d.comb += Assert(wait < READ_LATENCY + 2 + MAX_WAIT,
                           f"read response later than {READ_LATENCY + 2 + MAX_WAIT} cycles")

    # The request as taken, and what the bus did with it.
    addr, wdata, partial = Signal(ADDR_WIDTH), Signal(32), Signal()
    writes, reads = Signal(2), Signal(2)
    bus_err, read_data, read_err, read_seen = Signal(), Signal(32), Signal(), Signal()
    with m.If(fire(aw)):
        m.d.sync += [addr.eq(a.awaddr), wdata.eq(a.wdata), partial.eq(a.wstrb != 0b1111),
                     writes.eq(0), bus_err.eq(0)]
    with m.If(fire(ar)):
        m.d.sync += [addr.eq(a.araddr), reads.eq(0), read_seen.eq(0)]
    with m.If(bus.we & ~bus.wait):
        m.d.sync += [writes.eq(writes + 1), bus_err.eq(bus.err)]
    with m.If(bus.we):
        m.d.comb += Assert((aw_pending == 1) & (bus.addr == addr) & (bus.wdata == wdata),
                           "bus write is not the request's")
    with m.If(bus.re):
        m.d.sync += reads.eq(reads + 1)
        m.d.comb += Assert((ar_pending == 1) & (bus.addr == addr),
                           "bus read is not the request's")
    answer = Signal(READ_LATENCY)    # bit k: a read strobe k + 1 cycles before
    due = Signal()                   # the answer's cycle has come, the bus waited
    m.d.sync += answer.eq(Cat(bus.re, answer))
    with m.If(answer[-1] | due):
        with m.If(bus.wait):
            m.d.sync += due.eq(1)
        with m.Else():
            m.d.sync += [read_data.eq(bus.rdata), read_err.eq(bus.err), read_seen.eq(1),
                         due.eq(0)]
    m.d.comb += Assert(~(bus.we & bus.re), "bus write and read together")
    with m.If(a.bvalid):
        m.d.comb += [
            Assert(writes == ~partial, "bus write not exactly once (or a partial one)"),
            Assert((a.bresp == Resp.SLVERR) == (partial | bus_err), "bresp wrong"),
            Assert((a.bresp == Resp.SLVERR) | (a.bresp == Resp.OKAY), "bresp not a response"),
        ]
    with m.If(a.rvalid):
        m.d.comb += [
            Assert((reads == 1) & read_seen, "bus read not exactly once"),
            Assert(a.rresp.as_value() == Mux(read_err, Resp.SLVERR, Resp.OKAY), "rresp wrong"),
            Assert(a.rdata == (read_data & ~read_err.replicate(32)), "rdata wrong"),
        ]


def test_axil_prove(run_proof):
    run_proof(AxiLiteSlave(addr_width=ADDR_WIDTH), axil_properties, name="axil",
              mode="prove", depth=DEPTH)


def test_axil_mutant_ignores_partial_strobe(refute):
    Mutant = mutant(AxiLiteSlave, "m.d.comb += bus.we.eq(~resp_err)", "m.d.comb += bus.we.eq(1)")
    refute(Mutant(addr_width=ADDR_WIDTH), axil_properties,
           expect="bus write not exactly once", name="axil_mutant", mode="prove", depth=DEPTH)


def test_axil_mutant_writes_while_the_bus_waits(refute):
    """A slave that ends a write the bus asked to wait for is caught."""
    Mutant = mutant(AxiLiteSlave, "with m.If(resp_err | ~bus.wait):", "with m.If(1):")
    refute(Mutant(addr_width=ADDR_WIDTH), axil_properties,
           expect="bus write not exactly once", name="axil_mutant_wait", mode="prove", depth=DEPTH)


def test_axil_mutant_samples_the_read_early(refute):
    """A slave that takes the bus's answer a cycle before READ_LATENCY is caught: its
    R comes before the cycle the bus answers in."""
    Mutant = mutant(AxiLiteSlave, 'waits = [f"READ_WAIT_{i}" for i in range(1, READ_LATENCY)]',
                    'waits = [f"READ_WAIT_{i}" for i in range(2, READ_LATENCY)]')
    refute(Mutant(addr_width=ADDR_WIDTH), axil_properties,
           expect="bus read not exactly once", name="axil_mutant_early", mode="prove", depth=DEPTH)
