"""The skid buffer, proved: the stream rules on its output, every word out
once and in order, and a ``ready`` that is low exactly while a word is held."""

from amaranth.hdl import Assert, Assume, unsigned

from zeroskip.hdl.skid import SkidBuffer
from zeroskip.sim.formal import StreamTracker, mutant, past, stream_rules


def skid_properties(m, dut):
    stream_rules(m, dut.input, Assume, name="input")
    stream_rules(m, dut.output, Assert, name="output")
    # ``clear`` drops the held word: the lane pulses it between runs, when
    # the producer is idle, so it is proved separately (below).
    m.d.comb += Assume(~dut.clear)
    tracker = StreamTracker(m, dut.input, dut.output, capacity=1, pass_through=True,
                            name="skid")
    m.d.comb += Assert(dut.input.ready == (tracker.occupancy == 0),
                       "input.ready low exactly while a word is held")


def clear_properties(m, dut):
    m.d.comb += Assert(~past(m, dut.clear) | dut.input.ready, "clear empties the buffer")


def test_skid_prove(run_proof):
    run_proof(SkidBuffer(unsigned(4)), skid_properties, name="skid", mode="prove", depth=4)


def test_skid_clear_prove(run_proof):
    run_proof(SkidBuffer(unsigned(4)), clear_properties, name="skid_clear", mode="prove",
              depth=2)


def test_skid_mutant_drops_valid(refute):
    # The held word is offered only while the consumer is refusing it.
    Mutant = mutant(SkidBuffer, "self.output.valid.eq(full | self.input.valid)",
                    "self.output.valid.eq((full & ~self.output.ready) | self.input.valid)")
    refute(Mutant(unsigned(4)), skid_properties, expect="output: valid dropped before ready",
           name="skid_mutant", mode="prove", depth=4)
