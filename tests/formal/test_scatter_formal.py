"""The round-robin arbiter and the scatter bus, proved.

The arbiter function (``zeroskip.hdl.arbiter``), for every request vector and
pointer: the grant is one request, the first at or after the pointer
(wrapping), and there is a grant whenever there is a request; ``next_mask``
moves the pointer to the lane after the grant.

The ``Scatter`` bus (3 lanes, so that the pointer wraps at a
non-power-of-two), with every ``send`` stream assumed to follow the stream
rules and ``rr_reset`` pulsed only while no lane sends (at ``CTRL.start``):

- at most one grant per cycle, never to a lane that does not send
  (``send.ready`` only with ``send.valid``);
- no sum lost or duplicated: a granted sum is offered on ``recv`` of its
  destination lane, and only there, in the next cycle, with its row and sum
  and ``overflow`` 0; nothing is offered on ``recv`` without a grant;
- ``stall[p]`` is exactly "lane p sends and is not granted";
- bounded waiting: a sending lane is granted after at most ``pes - 1`` stall
  cycles (every other lane is served at most once before it). The pointer is
  internal, so this one is a bounded model check (depth 12: every pointer
  and request pattern of 3 lanes is reached within a few cycles), the rest
  are proved for all time by k-induction.
"""

from amaranth.hdl import Assert, Assume, Cat, Const, Elaboratable, Module, Signal

from zeroskip.core.config import AcceleratorConfig
from zeroskip.hdl import arbiter
from zeroskip.hdl.scatter import Scatter
from zeroskip.sim.formal import mutant, past, stream_rules

CONFIG = AcceleratorConfig(pes=3, value_width=8, acc_width=16, row_depth=4, x_depth=16)


class RoundRobin(Elaboratable):
    """``round_robin`` and ``next_mask`` of ``width`` lanes, as ports."""

    def __init__(self, width, round_robin=arbiter.round_robin):
        self.width = width
        self.round_robin = round_robin
        self.requests = Signal(width)
        self.pointer = Signal(range(width))
        self.grant = Signal(width)
        self.next_mask = Signal(width)

    def elaborate(self, platform):
        m = Module()
        mask = Signal(self.width)
        m.d.comb += [
            mask.eq(~((Const(1, self.width + 1) << self.pointer) - 1)[:self.width]),
            self.grant.eq(self.round_robin(self.requests, mask)),
            self.next_mask.eq(arbiter.next_mask(self.grant, self.width)),
        ]
        return m


class RoundRobins(Elaboratable):
    """One :class:`RoundRobin` of each width, proved together."""

    def __init__(self, widths, round_robin=arbiter.round_robin):
        self.arbiters = [RoundRobin(width, round_robin) for width in widths]

    def ports(self):
        return [signal for arbiter_ in self.arbiters
                for signal in (arbiter_.requests, arbiter_.pointer, arbiter_.grant,
                               arbiter_.next_mask)]

    def elaborate(self, platform):
        m = Module()
        for arbiter_ in self.arbiters:
            m.submodules[f"rr{arbiter_.width}"] = arbiter_
        return m


def round_robin_properties(m, dut):
    for arbiter_ in dut.arbiters:
        one_round_robin(m, arbiter_)


def one_round_robin(m, dut):
    width = dut.width
    m.d.comb += Assume(dut.pointer < width)
    # The reference: the first requesting lane at or after the pointer.
    winner = Signal(range(width), name=f"rr{width}_winner")
    found = Const(0)
    for offset in reversed(range(width)):
        lane = Signal(range(width), name=f"rr{width}_lane_at_{offset}")
        m.d.comb += lane.eq((dut.pointer + offset) % width)
        with m.If((dut.requests >> lane)[0]):
            m.d.comb += winner.eq(lane)
        found = found | (dut.requests >> lane)[0]
    with m.If(dut.requests.any()):
        m.d.comb += [
            Assert(dut.grant == (Const(1, width) << winner)[:width],
                   "grant is not the first request at or after the pointer"),
            # The pointer after the grant: the lanes after the winner.
            Assert(dut.next_mask == ~((Const(2, width + 1) << winner) - 1)[:width],
                   "next mask is not the lanes after the grant"),
        ]
    with m.Else():
        m.d.comb += Assert(dut.grant == 0, "a grant without a request")


def test_round_robin_function(run_proof):
    # Combinational: one cycle covers every input.
    dut = RoundRobins((1, 2, 3, 5, 8))
    run_proof(dut, round_robin_properties, name="round_robin", mode="bmc", depth=1,
              ports=dut.ports())


def test_round_robin_mutant_grants_without_request(refute):
    bad = mutant(arbiter.round_robin, "doubled = Cat(requests & mask, requests)",
                 "doubled = Cat(requests & mask, requests | 1)")
    dut = RoundRobins((3,), round_robin=bad)
    refute(dut, round_robin_properties, expect="grant is not the first request",
           name="round_robin_mutant", mode="bmc", depth=1, ports=dut.ports())


def scatter_properties(m, dut, *, fairness=False):
    requests = Cat(send.valid for send in dut.send)
    grants = Cat(send.ready for send in dut.send)
    for p, send in enumerate(dut.send):
        stream_rules(m, send, Assume, name=f"send{p}")
    m.d.comb += [
        Assume(~dut.rr_reset | ~requests.any()),
        Assert((grants & (grants - 1)) == 0, "more than one grant in a cycle"),
        Assert((grants & ~requests) == 0, "a grant without a request"),
        Assert(dut.stall == (requests & ~grants), "stall is not 'sent and not granted'"),
    ]
    # The sum granted in the previous cycle, and where it must arrive.
    granted = past(m, grants.any())
    width = len(dut.send[0].payload.as_value())
    granted_payload = Const(0, width)
    for p, send in enumerate(dut.send):
        granted_payload = granted_payload | (send.payload.as_value() & grants[p].replicate(width))
    payload = past(m, granted_payload)
    sent = dut.send[0].payload.shape()(payload)
    for q, recv in enumerate(dut.recv):
        m.d.comb += Assert(recv.valid == (granted & (sent.lane == q)),
                           "a sum lost, duplicated or misrouted")
        with m.If(recv.valid):
            m.d.comb += Assert((recv.payload.row == sent.row) & (recv.payload.sum == sent.sum)
                               & (recv.payload.overflow == 0), "a sum changed on the bus")
    m.d.comb += Assert(dut.busy == granted, "busy is not 'a sum on its way'")
    if fairness:
        bounded_wait(m, dut)


def bounded_wait(m, dut):
    pes = CONFIG.pes
    for p, send in enumerate(dut.send):
        waited = Signal(range(pes + 1), name=f"waited{p}")
        with m.If(send.valid & send.ready):
            m.d.sync += waited.eq(0)
        with m.Elif(dut.stall[p]):
            m.d.sync += waited.eq(waited + 1)
        m.d.comb += Assert(waited < pes, f"lane {p} waited {pes} cycles")


def scatter_fairness(m, dut):
    scatter_properties(m, dut, fairness=True)


def test_scatter_prove(run_proof):
    run_proof(Scatter(CONFIG), scatter_properties, name="scatter", mode="prove", depth=4)


def test_scatter_bounded_wait(run_proof):
    run_proof(Scatter(CONFIG), scatter_fairness, name="scatter_wait", mode="bmc", depth=12)


def test_scatter_mutant_keeps_pointer(refute):
    # A bus that never moves its pointer starves the higher lanes.
    Mutant = mutant(Scatter, "m.d.sync += mask.eq(next_mask(grant, pes))",
                    "m.d.sync += mask.eq(mask)")
    refute(Mutant(CONFIG), scatter_fairness, expect="waited", name="scatter_mutant",
           mode="bmc", depth=12)


def test_scatter_mutant_misroutes(refute):
    # A sum delivered to every lane but its own.
    Mutant = mutant(Scatter, "recv.valid.eq(bus_valid & (bus.lane == q))",
                    "recv.valid.eq(bus_valid & (bus.lane != q))")
    refute(Mutant(CONFIG), scatter_properties, expect="a sum lost, duplicated or misrouted",
           name="scatter_mutant_route", mode="prove", depth=4)
