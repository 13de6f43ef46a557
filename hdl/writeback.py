"""The writeback: partial-sum accumulation, bias and epilogue, then ``out``.

Implements steps 2 to 4 of the ``SPMV`` semantics (:mod:`zeroskip.firmware.isa`)
on the row sums of a PE, as a pipeline that never stalls::

    accept ─► read out, bias ─► + out ─► + bias ─► round, shift ─► relu, clamp, saturate, write
    (S0)      (sync ports)      (S1)     (S2)      (S3)            (S4)

A result accepted in cycle ``t`` is written to ``out`` in cycle ``t + 4``.
Within one instruction the rows are distinct, so a read never needs a write
still in the pipeline.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..firmware.isa import EpiArgs
from .layouts import pe_result_layout

__all__ = ["Writeback"]


class Writeback(wiring.Component):
    """Applies accumulate, bias and the epilogue, and writes ``out``.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    input : In(stream.Signature(pe_result_layout(config)))
        Row sums; ``ready`` is always high (one result per cycle).
    clear : In(1)
        Clears ``overflow`` (pulsed at instruction start).
    out_base : In(row_addr_width)
    accumulate, bias, epilogue : In(1)
    epi : In(EpiArgs)
        Instruction parameters; each must be stable from the cycle a result
        is accepted until its write (``LATENCY`` cycles later).
    rd_addr : Out(row_addr_width)
        Address ``out_base + row`` for the synchronous read ports of ``out``
        and ``bias`` (always enabled); their data is expected in
        ``out_data`` and ``bias_data`` in the next cycle.
    out_data, bias_data : In(signed(acc_width))
    wr_addr : Out(row_addr_width)
    wr_data : Out(signed(acc_width))
    wr_en : Out(1)
        The write port of ``out``.
    overflow : Out(1)
        Sticky until ``clear``: a result arrived with ``overflow`` set, or the
        ``accumulate`` or ``bias`` addition left ``acc_width`` signed bits.
    idle : Out(1)
        High when every accepted result has been written.
    """

    #: Cycles from accepting a result to the cycle its write is issued.
    LATENCY = 4

    def __init__(self, config):
        self._config = config
        aw = config.acc_width
        super().__init__({
            "input": In(stream.Signature(pe_result_layout(config))),
            "clear": In(1),
            "out_base": In(config.row_addr_width),
            "accumulate": In(1),
            "bias": In(1),
            "epilogue": In(1),
            "epi": In(EpiArgs),
            "rd_addr": Out(config.row_addr_width),
            "out_data": In(signed(aw)),
            "bias_data": In(signed(aw)),
            "wr_addr": Out(config.row_addr_width),
            "wr_data": Out(signed(aw)),
            "wr_en": Out(1),
            "overflow": Out(1),
            "idle": Out(1),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        c = self._config
        aw = c.acc_width
        m = Module()
        inp = self.input

        def fits(value):
            # ``value`` is acc_width + 1 bits wide: it fits if its top two agree.
            return value[aw] == value[aw - 1]

        def stage(name):
            return (Signal(name=f"{name}_valid"),
                    Signal(c.row_addr_width, name=f"{name}_addr"),
                    Signal(signed(aw), name=f"{name}_sum"),
                    Signal(name=f"{name}_overflow"))

        # S0: accept and read.
        m.d.comb += [
            inp.ready.eq(1),
            self.rd_addr.eq(self.out_base + inp.payload.row),
        ]
        v1, a1, s1, o1 = stage("s1")
        m.d.sync += [
            v1.eq(inp.valid),
            a1.eq(self.rd_addr),
            s1.eq(inp.payload.sum),
            o1.eq(inp.payload.overflow),
        ]

        # S1: accumulate onto the earlier partial sum.
        psum = Signal(signed(aw + 1))
        m.d.comb += psum.eq(s1 + Mux(self.accumulate, self.out_data, 0))
        v2, a2, s2, o2 = stage("s2")
        b2 = Signal(signed(aw))
        m.d.sync += [
            v2.eq(v1),
            a2.eq(a1),
            s2.eq(psum[:aw]),
            o2.eq(o1 | ~fits(psum)),
            b2.eq(Mux(self.bias, self.bias_data, 0)),
        ]

        # S2: add the bias.
        bsum = Signal(signed(aw + 1))
        m.d.comb += bsum.eq(s2 + b2)
        v3, a3, s3, o3 = stage("s3")
        m.d.sync += [
            v3.eq(v2),
            a3.eq(a2),
            s3.eq(bsum[:aw]),
            o3.eq(o2 | ~fits(bsum)),
        ]
        with m.If(v3 & o3):
            m.d.sync += self.overflow.eq(1)

        # Constants derived from the (stable) epilogue parameters, registered.
        # relu, clamp and saturation compose to min(max(s, lower), upper) with
        #   lower = max(relu ? max(clamp_lo, 0) : clamp_lo, value_min)
        #   upper = min(max(clamp_hi, value_min), value_max)
        # which is ``both`` = min(lower, upper) when s < lower, else min(s, upper).
        epi = self.epi
        rounding = Signal(31)                    # 2 ** (shift - 1), shift <= 31
        lower = Signal(signed(18))
        upper = Signal(signed(18))
        both = Signal(signed(18))
        low_relu = Mux(epi.relu & (epi.clamp_lo < 0), 0, epi.clamp_lo)
        m.d.sync += [
            rounding.eq((Const(1, 1) << epi.shift) >> 1),
            lower.eq(Mux(low_relu < c.value_min, c.value_min, low_relu)),
            upper.eq(Mux(epi.clamp_hi > c.value_max, c.value_max,
                         Mux(epi.clamp_hi < c.value_min, c.value_min, epi.clamp_hi))),
            both.eq(Mux(lower < upper, lower, upper)),
        ]

        # S3: round and shift (one bit wider than any operand: cannot overflow).
        rounded = Signal(signed(max(aw, 31) + 2))
        shifted = Signal(signed(aw))
        m.d.comb += [
            rounded.eq(s3 + rounding),
            # |rounded >> shift| <= 2 ** (aw - 1) for shift >= 1: it fits aw bits.
            shifted.eq(Mux(self.epilogue, rounded >> epi.shift, s3)),
        ]
        v4 = Signal()
        a4 = Signal(c.row_addr_width)
        s4 = Signal(signed(aw))
        m.d.sync += [v4.eq(v3), a4.eq(a3), s4.eq(shifted)]

        # S4: relu, clamp, saturate to the value width; write.
        limited = Signal(signed(aw))
        m.d.comb += [
            limited.eq(Mux(s4 < lower, both, Mux(s4 > upper, upper, s4))),
            self.wr_en.eq(v4),
            self.wr_addr.eq(a4),
            self.wr_data.eq(Mux(self.epilogue, limited, s4)),
            self.idle.eq(~(v1 | v2 | v3 | v4)),
        ]

        with m.If(self.clear):
            m.d.sync += [self.overflow.eq(0), v1.eq(0), v2.eq(0), v3.eq(0), v4.eq(0)]
        return m
