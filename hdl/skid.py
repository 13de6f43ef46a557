"""A skid buffer: cuts the combinational ``ready`` path of a stream.

:class:`SkidBuffer` passes its input straight through while it is empty, so
it adds no latency; when the consumer refuses a transfer it keeps the word in
a register and refuses the producer for the next cycle. ``input.ready``
therefore comes from a flip-flop, so a long arbitration path behind
``output.ready`` (the gather network's bank grants) no longer reaches into the
producer's logic. The consumer sees a word in every cycle the producer offers
one: throughput stays one word per cycle.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """A one-word skid buffer with pass-through.

    Parameters
    ----------
    shape : shape-like
        The payload shape.

    Members
    -------
    input : In(stream.Signature(shape))
        ``ready`` is a register: low exactly while a word is held.
    output : Out(stream.Signature(shape))
        The held word if there is one, else the input.
    clear : In(1)
        Drops the held word.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({
            "input": In(stream.Signature(shape)),
            "output": Out(stream.Signature(shape)),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        held = Signal(self._shape)
        m.d.comb += [
            self.input.ready.eq(~full),
            self.output.valid.eq(full | self.input.valid),
            self.output.payload.eq(Mux(full, held, self.input.payload)),
        ]
        with m.If(full):
            with m.If(self.output.ready):
                m.d.sync += full.eq(0)
        with m.Elif(self.input.valid & ~self.output.ready):
            m.d.sync += [full.eq(1), held.eq(self.input.payload)]
        with m.If(self.clear):
            m.d.sync += full.eq(0)
        return m
