"""The DMA engine's streams, proved by a bounded model check from reset.

The sequencer is assumed to keep its side of the contract (a push only while
the engine is not ``full``, of operands that pass the check, of at least one
word; no ``flush``); the memory is assumed to follow the stream rules and to
return no more words than were requested. Asserted:

- ``read_req`` follows the stream rules (valid held, payload stable until
  ready) and one request is outstanding at a time;
- the ``k``-th request (any ``k``) is the ``k``-th load's: ``src`` and
  ``pes * count`` words;
- ``read_data`` is ready whenever a word is outstanding, and every word taken
  is written to a lane in the next cycle, and nothing else is;
- the engine holds at most ``LOAD_QUEUE`` loads and is ``busy`` while a word
  is outstanding or being written.

Loads of up to ``MAX_COUNT`` words per lane keep the check short.
"""

from amaranth.hdl import Assert, Assume, ResetSignal, Signal
from amaranth.hdl._ast import AnyConst

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import LoadArgs
from zeroskip.core.timing import LOAD_QUEUE
from zeroskip.hdl.dma import DmaEngine
from zeroskip.sim.formal import mutant, past, stream_rules

CONFIG = AcceleratorConfig(pes=2, x_depth=16, nz_depth=16, row_depth=16, imem_depth=4,
                           formats=("csr",), reduce=False, ext_words=1024, ext_latency=1)
MAX_COUNT = 1
DEPTH = 14


def dma_properties(m, dut):
    rst = ResetSignal()
    stream_rules(m, dut.read_req, Assert, name="read_req")
    stream_rules(m, dut.read_data, Assume, name="read_data")
    m.d.comb += [
        Assume(~dut.flush),
        Assume(~dut.push | (~dut.full & ~dut.args_error & (dut.args.count != 0)
                            & (dut.args.count <= MAX_COUNT))),
    ]

    # Words requested and not yet returned: the memory returns no more.
    outstanding = Signal(8)
    req = dut.read_req.valid & dut.read_req.ready
    word = dut.read_data.valid & dut.read_data.ready
    m.d.sync += outstanding.eq(outstanding + (req * dut.read_req.payload.len) - word)
    with m.If(rst):
        m.d.sync += outstanding.eq(0)
    m.d.comb += Assume(~dut.read_data.valid | (outstanding != 0))

    # The k-th load pushed and the k-th request.
    pushes, requests = Signal(3), Signal(3)
    k = AnyConst(3)
    load = Signal(LoadArgs)
    recorded = Signal()
    m.d.sync += [pushes.eq(pushes + dut.push), requests.eq(requests + req)]
    with m.If(dut.push & (pushes == k)):
        m.d.sync += [load.eq(dut.args), recorded.eq(1)]

    with m.If(~rst):
        m.d.comb += [
            Assert(~dut.read_req.valid | (outstanding == 0), "a second request outstanding"),
            Assert((outstanding == 0) | dut.read_data.ready, "read_data not ready for a word"),
            Assert(dut.wr_en == past(m, word), "a lane write without a word, or a word lost"),
            Assert(~dut.busy == ((outstanding == 0) & ~dut.wr_en & (pushes == requests)),
                   "busy is not the loads held"),
        ]
        with m.If(dut.read_req.valid):
            m.d.comb += Assert(dut.read_req.payload.len != 0, "a request of no words")
        with m.If(req & (requests == k)):
            m.d.comb += [
                Assert(recorded, "a request before its load"),
                Assert((dut.read_req.payload.addr == load.src)
                       & (dut.read_req.payload.len == load.count * CONFIG.pes),
                       "the request is not its load's"),
            ]
        m.d.comb += Assert(pushes - requests <= LOAD_QUEUE, "more loads held than the queue")


def test_dma_bmc(run_proof):
    run_proof(DmaEngine(CONFIG), dma_properties, name="dma", mode="bmc", depth=DEPTH,
              solver="yices")


def test_dma_mutant_drops_the_request(refute):
    """An engine that goes on without its request being taken is caught."""
    Mutant = mutant(DmaEngine, "with m.If(self.read_req.valid & self.read_req.ready):",
                    "with m.If(self.read_req.valid):")
    refute(Mutant(CONFIG), dma_properties, expect="read_req: valid dropped before ready",
           name="dma_mutant_valid", mode="bmc", depth=DEPTH, solver="yices")


def test_dma_mutant_requests_one_lane(refute):
    """An engine that requests one lane's words instead of every lane's is caught."""
    Mutant = mutant(DmaEngine, "pushed.words.eq(self.args.count * c.pes)",
                    "pushed.words.eq(self.args.count)")
    refute(Mutant(CONFIG), dma_properties, expect="the request is not its load's",
           name="dma_mutant_len", mode="bmc", depth=DEPTH, solver="yices")
