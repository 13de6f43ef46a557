"""The gather network, proved on its ports only (so the proof re-targets to a
rebuilt gather with the same request/response streams): 2 lanes, 2 banks.

- every request and response stream: the stream rules (requests assumed,
  responses asserted);
- per lane, order preserved, nothing lost or duplicated: the ``k``-th
  response of a lane carries the tag of its ``k``-th request (a skipped
  request answers data 0), a lane holds at most ``QUEUE_DEPTH`` requests,
  and no response comes without a request;
- the bank arbiters: ``stall`` only for a lane offering a bank request that
  is not accepted, and bounded waiting: a lane whose request stalls is
  accepted after at most ``pes - 1`` stall cycles.

The order properties are bounded model checks (the queue is internal state
the ports do not show, so k-induction would need the design's registers).
"""

from amaranth.hdl import Assert, Assume, Signal, unsigned

from zeroskip.core.config import AcceleratorConfig
from zeroskip.hdl.gather import Gather
from zeroskip.sim.formal import StreamTracker, mutant, stream_rules

# One cluster of both lanes, so that they share (and arbitrate) the banks.
CONFIG = AcceleratorConfig(pes=2, cluster_lanes=2, value_width=8, acc_width=16, x_depth=16,
                           x_banks=2, row_depth=4)
TAG = unsigned(3)
DEPTH = 12


def lane_order(m, req, resp, *, capacity, name):
    """Per-lane ordering of a request/response pair of streams."""
    StreamTracker(m, req, resp, capacity=capacity, name=name,
                  match=lambda token, payload: (payload.tag == token.tag) &
                  (~token.skip | (payload.data == 0)))


def gather_properties(m, dut):
    pes = CONFIG.pes
    m.d.comb += Assume(~dut.rr_reset)
    if hasattr(dut, "scan_en"):          # the column-mode scan port (with CSC only)
        m.d.comb += Assume(~dut.scan_en)
    for p in range(pes):
        req, resp = dut.req[p], dut.resp[p]
        stream_rules(m, req, Assume, name=f"req{p}")
        stream_rules(m, resp, Assert, name=f"resp{p}")
        lane_order(m, req, resp, capacity=Gather.QUEUE_DEPTH, name=f"lane{p}")
        m.d.comb += Assert(~dut.stall[p] | (req.valid & ~req.payload.skip & ~req.ready),
                           f"lane {p} stalls without a refused bank request")
        waited = Signal(range(pes + 1), name=f"waited{p}")
        with m.If(req.valid & req.ready):
            m.d.sync += waited.eq(0)
        with m.Elif(dut.stall[p]):
            m.d.sync += waited.eq(waited + 1)
        m.d.comb += Assert(waited < pes, f"lane {p} waited {pes} stall cycles")


def test_gather_bmc(run_proof):
    run_proof(Gather(CONFIG, tag_shape=TAG), gather_properties, name="gather", mode="bmc",
              depth=DEPTH)


def test_gather_mutant_reorders(refute):
    # The queue's read pointer moves backwards: words come out of order.
    Mutant = mutant(Gather, "head.eq(head + pop),", "head.eq(head - pop),", method="_lane")
    refute(Mutant(CONFIG, tag_shape=TAG), gather_properties,
           expect="a word out of order", name="gather_mutant", mode="bmc", depth=DEPTH)
