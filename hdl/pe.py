"""The zero-skipping processing element: one multiply-accumulate lane.

Two stages: the product register (the multiply is registered, and only
issued when both operands are nonzero) and the accumulator, which emits a
row's sum into the output register on the row's last token. The PE takes one
input per cycle while its output is ready.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.layouts import pe_input_layout, pe_result_layout

__all__ = ["ProcessingElement"]


class ProcessingElement(ConfigComponent):
    """Zero-skipping multiply-accumulate over the tokens of a lane.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    input : In(stream.Signature(pe_input_layout(config)))
        Products ``a * x`` of a row in stored order; ``last`` ends the row,
        ``empty`` stands for a row without nonzeros (``last`` set too).
    output : Out(stream.Signature(pe_result_layout(config)))
        ``(row, sum, overflow)`` per row; ``overflow`` is set if any partial
        sum of the row does not fit ``acc_width`` signed bits (``sum`` then
        holds the wrapped value).
    clear : In(1)
        Drops every partial state (the accumulator, the product and output
        registers); pulsed at instruction start.
    mac : Out(1)
        Pulses in a cycle that consumes a token with both operands nonzero.
    skip : Out(1)
        Pulses in a cycle that consumes a non-empty token with a zero operand.
    busy : Out(1)
        Pulses in a cycle that consumes a non-empty token.
    idle : Out(1)
        High when no token or result is held.
    """

    def __init__(self, config):
        check_config(config)
        super().__init__(config, {
            "input": In(stream.Signature(pe_input_layout(config))),
            "output": Out(stream.Signature(pe_result_layout(config))),
            "clear": In(1),
            "mac": Out(1),
            "skip": Out(1),
            "busy": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        c = self._config
        m = Module()
        inp, out = self.input, self.output

        # Stage 1: the product register.
        v1 = Signal()
        product = Signal(signed(2 * c.value_width))
        row1 = Signal(c.row_addr_width)
        last1 = Signal()

        # Stage 2: the accumulator.
        acc = Signal(signed(c.acc_width))
        acc_overflow = Signal()

        adv1 = ~v1 | ~last1 | ~out.valid | out.ready
        take = inp.valid & inp.ready
        operands_nonzero = (inp.payload.a != 0) & (inp.payload.x != 0)
        m.d.comb += [
            inp.ready.eq(adv1),
            self.busy.eq(take & ~inp.payload.empty),
            self.mac.eq(take & ~inp.payload.empty & operands_nonzero),
            self.skip.eq(take & ~inp.payload.empty & ~operands_nonzero),
            self.idle.eq(~v1 & ~out.valid),
        ]

        with m.If(adv1):
            m.d.sync += v1.eq(inp.valid)
        with m.If(take):
            m.d.sync += [
                row1.eq(inp.payload.row),
                last1.eq(inp.payload.last),
            ]
            # The multiplier is only clocked for a real product.
            with m.If(self.mac):
                m.d.sync += product.eq(inp.payload.a * inp.payload.x)
            with m.Else():
                m.d.sync += product.eq(0)

        total = Signal(signed(c.acc_width + 1))
        total_overflow = Signal()
        m.d.comb += [
            total.eq(acc + product),
            total_overflow.eq(total[c.acc_width] != total[c.acc_width - 1]),
        ]

        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(v1 & adv1):
            with m.If(last1):
                m.d.sync += [
                    out.valid.eq(1),
                    out.payload.row.eq(row1),
                    out.payload.sum.eq(total[:c.acc_width]),
                    out.payload.overflow.eq(acc_overflow | total_overflow),
                    acc.eq(0),
                    acc_overflow.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    acc.eq(total[:c.acc_width]),
                    acc_overflow.eq(acc_overflow | total_overflow),
                ]

        with m.If(self.clear):
            m.d.sync += [
                v1.eq(0),
                acc.eq(0),
                acc_overflow.eq(0),
                out.valid.eq(0),
            ]
        return m

