"""The move engine: ``MOVE`` copies the lanes' outputs into the input vector."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from zeroskip.core.isa import MoveArgs
from zeroskip.hdl.axil import READ_LATENCY
from zeroskip.hdl.component import ConfigComponent, check_config

__all__ = ["MoveEngine"]


class MoveEngine(ConfigComponent):
    """Runs one ``MOVE``: ``x[dst_base + p * count + i] = saturate(out[p][src_base + i])``.

    It checks the operands in the cycle after ``start`` (``src_base + count
    <= row_depth``, ``dst_base + pes * count <= x_depth``); a failing check
    sets ``desc_error`` and writes nothing. Otherwise it walks the words in X
    order, lane by lane: in each cycle it presents ``src_base + i`` to every
    lane's ``out`` read port (the port the host reads through while the
    lanes are idle); :data:`~zeroskip.hdl.axil.READ_LATENCY` cycles later
    (the memory read, the lane's register) it registers lane ``p``'s word, in
    the next it clamps it to the value width into the output register, and
    from there the word is written through the X write port the host's writes
    use (every copy of x). No memory output meets the lane multiplexer, the
    clamp's comparisons or the X memories' wide write fan-out in one cycle.
    One word per cycle: ``busy`` lasts ``pes * count + 3 + READ_LATENCY``
    cycles (the check, the words, the pipeline).

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    start : In(1)
        One-cycle pulse; ``args`` is sampled in that cycle. Ignored while ``busy``.
    args : In(MoveArgs)
    busy : Out(1)
        High from the cycle after ``start`` until the last word is written.
    desc_error : Out(1)
        Sticky until the next ``start``: the operands reach outside ``out`` or X.
    out_addr : Out(row_addr_width)
        The ``out`` word every lane reads (valid while ``busy``).
    out_data : In(data.ArrayLayout(signed(acc_width), pes))
        Each lane's ``out[out_addr]`` of ``READ_LATENCY`` cycles before.
    x_we : Out(1)
    x_addr : Out(col_width)
    x_data : Out(signed(value_width))
        The X write: ``x[x_addr] := x_data`` while ``x_we``.
    """

    def __init__(self, config):
        check_config(config)
        super().__init__(config, {
            "start": In(1),
            "args": In(MoveArgs),
            "busy": Out(1),
            "desc_error": Out(1),
            "out_addr": Out(config.row_addr_width),
            "out_data": In(data.ArrayLayout(signed(config.acc_width), config.pes)),
            "x_we": Out(1),
            "x_addr": Out(config.col_width),
            "x_data": Out(signed(config.value_width)),
        })

    def elaborate(self, platform):
        c = self._config
        m = Module()
        args = Signal(MoveArgs)
        word = Signal(range(c.row_depth + 1))      # i: the out word of the lanes
        # range(pes + 1): never zero bits wide (one lane), and holds the lane
        # after the last, which the last word's step leaves behind.
        lane = Signal(range(c.pes + 1))            # p
        x_addr = Signal(c.col_width)              # dst_base + p * count + i
        last = (lane == c.pes - 1) & (word == args.count - 1)
        # The read stages (stage k: the lane and X address of the word the
        # lanes were asked for k + 1 cycles before; the last one's word is in
        # out_data), the selected word's register, and the output register.
        rd_valid = [Signal(name=f"rd_valid_{k}") for k in range(READ_LATENCY)]
        rd_lane = [Signal(range(c.pes + 1), name=f"rd_lane_{k}") for k in range(READ_LATENCY)]
        rd_addr = [Signal(c.col_width, name=f"rd_addr_{k}") for k in range(READ_LATENCY)]
        for stages in (rd_valid, rd_lane, rd_addr):
            m.d.sync += [later.eq(earlier) for earlier, later in zip(stages, stages[1:])]
        sel_valid, sel_addr = Signal(), Signal(c.col_width)
        selected = Signal(signed(c.acc_width))
        m.d.sync += [rd_valid[0].eq(0), sel_valid.eq(rd_valid[-1]), sel_addr.eq(rd_addr[-1]),
                     selected.eq(self.out_data[rd_lane[-1]]), self.x_we.eq(sel_valid),
                     self.x_addr.eq(sel_addr),
                     self.x_data.eq(Mux(selected > c.value_max, c.value_max,
                                        Mux(selected < c.value_min, c.value_min, selected)))]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [args.eq(self.args), self.desc_error.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [word.eq(0), lane.eq(0), x_addr.eq(args.dst_base)]
                with m.If((args.src_base + args.count > c.row_depth)
                          | (args.dst_base + args.count * c.pes > c.x_depth)):
                    m.d.sync += self.desc_error.eq(1)
                    m.next = "IDLE"
                with m.Elif(args.count == 0):
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), self.out_addr.eq(args.src_base + word)]
                m.d.sync += [rd_valid[0].eq(1), rd_lane[0].eq(lane), rd_addr[0].eq(x_addr),
                             x_addr.eq(x_addr + 1)]
                with m.If(word == args.count - 1):
                    m.d.sync += [word.eq(0), lane.eq(lane + 1)]
                with m.Else():
                    m.d.sync += word.eq(word + 1)
                with m.If(last):
                    m.next = "DRAIN"
            # After the last read (or the check, for no words): the read
            # stages but the first, the selected word's register, the output
            # register, the write.
            drain = ["DRAIN", *(f"DRAIN_READ_{k}" for k in range(1, READ_LATENCY)),
                     "DRAIN_SELECT", "DRAIN_WRITE"]
            for state, after in zip(drain, [*drain[1:], "IDLE"]):
                with m.State(state):
                    m.d.comb += self.busy.eq(1)
                    m.next = after
        return m
