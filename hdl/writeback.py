"""The writeback: partial-sum accumulation, bias and epilogue, then ``out``.

:class:`Writeback` implements steps 2 to 4 of the ``SPMV`` semantics
(:mod:`zeroskip.core.isa`) on finished row sums; step 4, the epilogue, is the rule
:func:`zeroskip.core.arith.epilogue` defines (the ISA model calls it and the tests
compare this pipeline with the model), composed here into one comparison
against precomputed bounds; :class:`Accumulator`
builds the row sums of column mode, where a row's products arrive spread
over the columns.

:class:`Writeback` is a pipeline that never stalls::

    accept ─► read out, bias ─► register ─► + out ─► + bias ─► round, shift ─► relu, clamp, write
    (S0)      (sync ports)      (S1)         (S2)     (S3)      (S4)            (S5)

A result accepted in cycle ``t`` is written to ``out`` in cycle ``t + 5``. The
memories' data is registered before any adder sees it (S1), so that a block
RAM's clock-to-output and an adder's carry chain are never in one cycle.
Within one instruction the rows are distinct, so a read never needs a write
still in the pipeline.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from zeroskip.core.isa import EpiArgs
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.layouts import pe_result_layout

__all__ = ["Writeback", "Accumulator"]


class Writeback(ConfigComponent):
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
    LATENCY = 5

    def __init__(self, config):
        check_config(config)
        aw = config.acc_width
        super().__init__(config, {
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

        # S1: register the memories' data (the earlier partial sum, the bias).
        vm, am, sm, om = stage("sm")
        old = Signal(signed(aw))
        bm = Signal(signed(aw))
        m.d.sync += [
            vm.eq(v1),
            am.eq(a1),
            sm.eq(s1),
            om.eq(o1),
            old.eq(Mux(self.accumulate, self.out_data, 0)),
            bm.eq(Mux(self.bias, self.bias_data, 0)),
        ]

        # S2: accumulate onto the earlier partial sum.
        psum = Signal(signed(aw + 1))
        m.d.comb += psum.eq(sm + old)
        v2, a2, s2, o2 = stage("s2")
        b2 = Signal(signed(aw))
        m.d.sync += [
            v2.eq(vm),
            a2.eq(am),
            s2.eq(psum[:aw]),
            o2.eq(om | ~fits(psum)),
            b2.eq(bm),
        ]

        # S3: add the bias.
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

        # S4: round and shift (one bit wider than any operand: cannot overflow).
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

        # S5: relu, clamp, saturate to the value width; write.
        limited = Signal(signed(aw))
        m.d.comb += [
            limited.eq(Mux(s4 < lower, both, Mux(s4 > upper, upper, s4))),
            self.wr_en.eq(v4),
            self.wr_addr.eq(a4),
            self.wr_data.eq(Mux(self.epilogue, limited, s4)),
            self.idle.eq(~(v1 | vm | v2 | v3 | v4)),
        ]

        with m.If(self.clear):
            m.d.sync += [self.overflow.eq(0), v1.eq(0), vm.eq(0), v2.eq(0), v3.eq(0),
                         v4.eq(0)]
        return m


class Accumulator(ConfigComponent):
    """Column mode's row sums: zeroes the rows, adds products, reads the sums out.

    In column mode a lane's products arrive in column order, each for any of
    its rows, so the row sums live in a memory (``out`` itself, or the lane's
    ``psum`` memory when steps 2 to 4 still have to be applied) and every
    product is added to its row by a read-modify-write::

        accept, read row ─► register ─► add, write      (a product per cycle)
        (S0, sync port)     (S1)         (S2: memory data or a sum S2 wrote
                                          in one of the two previous cycles)

    A product accepted in cycle ``t`` is written in cycle ``t + 2``. The reads
    of the next two products (issued in cycles ``t + 1`` and ``t + 2``) cannot
    see that write, so S2 forwards it: back-to-back products of one row lose
    nothing. The memory's data is registered (S1) before the adder sees it.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    input : In(stream.Signature(pe_result_layout(config)))
        Products ``(row, sum, overflow)``; ready except during a pass.
    output : Out(stream.Signature(pe_result_layout(config)))
        The final pass: ``(i, sum of row i, 0)`` for ``i`` from 0 to ``rows - 1``.
    clear : In(1)
        Clears ``overflow`` and every pass (pulsed at instruction start).
    base : In(row_addr_width)
        Row ``i`` lives at ``base + i``; stable during an instruction.
    rows : In(range(row_depth + 1))
        The number of rows; sampled with ``init`` and ``flush``.
    init : In(1)
        Starts the zeroing pass: rows 0 to ``rows - 1`` are written with 0
        in the ``rows`` cycles after the pulse.
    flush : In(1)
        Starts the final pass (reads one row per cycle while ``output`` is
        ready; the first is offered two cycles after the pulse).
    initialised : Out(1)
        Low while the zeroing pass is running.
    rd_addr : Out(row_addr_width)
    rd_en : Out(1)
    rd_data : In(signed(acc_width))
        A synchronous read port of the sums' memory (data holds while
        ``rd_en`` is low).
    wr_addr : Out(row_addr_width)
    wr_data : Out(signed(acc_width))
    wr_en : Out(1)
    overflow : Out(1)
        Sticky until ``clear``: a partial sum left ``acc_width`` signed bits
        (or a product arrived with ``overflow``).
    idle : Out(1)
        High when no pass is running and every product has been written.
    """

    def __init__(self, config):
        check_config(config)
        aw = config.acc_width
        super().__init__(config, {
            "input": In(stream.Signature(pe_result_layout(config))),
            "output": Out(stream.Signature(pe_result_layout(config))),
            "clear": In(1),
            "base": In(config.row_addr_width),
            "rows": In(range(config.row_depth + 1)),
            "init": In(1),
            "flush": In(1),
            "initialised": Out(1),
            "rd_addr": Out(config.row_addr_width),
            "rd_en": Out(1),
            "rd_data": In(signed(aw)),
            "wr_addr": Out(config.row_addr_width),
            "wr_data": Out(signed(aw)),
            "wr_en": Out(1),
            "overflow": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        c = self._config
        aw = c.acc_width
        m = Module()
        inp, out = self.input, self.output

        # Zeroing pass.
        init_left = Signal(range(c.row_depth + 1))
        init_row = Signal(c.row_addr_width)
        initialising = init_left != 0
        with m.If(initialising):
            m.d.sync += [init_left.eq(init_left - 1), init_row.eq(init_row + 1)]

        # Final pass: F0 reads, F1 offers the memory's data.
        flush_left = Signal(range(c.row_depth + 1))
        flush_row = Signal(c.row_addr_width)
        f1_valid = Signal()
        f1_row = Signal(c.row_addr_width)
        f_adv = ~f1_valid | out.ready
        f_read = f_adv & (flush_left != 0)
        with m.If(f_read):
            m.d.sync += [flush_left.eq(flush_left - 1), flush_row.eq(flush_row + 1)]
        with m.If(f_adv):
            m.d.sync += [f1_valid.eq(f_read), f1_row.eq(flush_row)]
        flushing = (flush_left != 0) | f1_valid
        m.d.comb += [
            out.valid.eq(f1_valid),
            out.payload.row.eq(f1_row),
            out.payload.sum.eq(self.rd_data),
            out.payload.overflow.eq(0),
        ]

        # Read-modify-write of the products.
        s1_valid = Signal()
        s1_addr = Signal(c.row_addr_width)
        s1_product = Signal(signed(aw))
        s1_overflow = Signal()
        s2_valid = Signal()
        s2_addr = Signal(c.row_addr_width)
        s2_product = Signal(signed(aw))
        s2_overflow = Signal()
        s2_data = Signal(signed(aw))
        # The sums written in the previous cycle (fwd1) and the one before (fwd2).
        fwd1_valid, fwd2_valid = Signal(), Signal()
        fwd1_addr, fwd2_addr = Signal(c.row_addr_width), Signal(c.row_addr_width)
        fwd1_sum, fwd2_sum = Signal(signed(aw)), Signal(signed(aw))
        take = inp.valid & inp.ready
        m.d.comb += inp.ready.eq(~initialising & ~flushing)
        m.d.sync += [s1_valid.eq(take), s2_valid.eq(s1_valid)]
        with m.If(take):
            m.d.sync += [
                s1_addr.eq(self.base + inp.payload.row),
                s1_product.eq(inp.payload.sum),
                s1_overflow.eq(inp.payload.overflow),
            ]
        m.d.sync += [s2_addr.eq(s1_addr), s2_product.eq(s1_product),
                     s2_overflow.eq(s1_overflow), s2_data.eq(self.rd_data)]
        old = Mux(fwd1_valid & (fwd1_addr == s2_addr), fwd1_sum,
                  Mux(fwd2_valid & (fwd2_addr == s2_addr), fwd2_sum, s2_data))
        total = Signal(signed(aw + 1))
        m.d.comb += total.eq(old + s2_product)
        m.d.sync += [
            fwd1_valid.eq(s2_valid), fwd1_addr.eq(s2_addr), fwd1_sum.eq(total[:aw]),
            fwd2_valid.eq(fwd1_valid), fwd2_addr.eq(fwd1_addr), fwd2_sum.eq(fwd1_sum),
        ]
        with m.If(s2_valid & (s2_overflow | (total[aw] != total[aw - 1]))):
            m.d.sync += self.overflow.eq(1)

        # The memory ports.
        with m.If(flushing):
            m.d.comb += [self.rd_addr.eq(self.base + flush_row), self.rd_en.eq(f_read)]
        with m.Else():
            m.d.comb += [self.rd_addr.eq(self.base + inp.payload.row), self.rd_en.eq(1)]
        with m.If(initialising):
            m.d.comb += [self.wr_addr.eq(self.base + init_row), self.wr_data.eq(0),
                         self.wr_en.eq(1)]
        with m.Else():
            m.d.comb += [self.wr_addr.eq(s2_addr), self.wr_data.eq(total[:aw]),
                         self.wr_en.eq(s2_valid)]

        m.d.comb += [
            self.initialised.eq(~initialising),
            self.idle.eq(~initialising & ~flushing & ~s1_valid & ~s2_valid),
        ]

        with m.If(self.init):
            m.d.sync += [init_left.eq(self.rows), init_row.eq(0)]
        with m.If(self.flush):
            m.d.sync += [flush_left.eq(self.rows), flush_row.eq(0)]
        with m.If(self.clear):
            m.d.sync += [self.overflow.eq(0), s1_valid.eq(0), s2_valid.eq(0), fwd1_valid.eq(0),
                         fwd2_valid.eq(0), f1_valid.eq(0), init_left.eq(0), flush_left.eq(0)]
        return m
