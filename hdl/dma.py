"""The DMA engine: ``LOAD`` copies lane images from the external memory into the lanes."""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, fifo, stream
from amaranth.lib.wiring import In, Out

from zeroskip.core.isa import LOAD_REGIONS, LoadArgs, LoadRegion, MemoryMap
from zeroskip.core.timing import LOAD_QUEUE
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.extmem import EXT_WORD_WIDTH, ExtReadRequest, ext_len_width

__all__ = ["DmaEngine"]


class DmaEngine(ConfigComponent):
    """Runs the ``LOAD`` transfers, one after another, in the order they were pushed.

    The sequencer checks a ``LOAD`` with ``args_error`` (combinational on
    ``args``: ``dst_base + count`` past the region's depth or ``src + pes *
    count`` past ``ext_words``) and pushes it (``push``) when it passes, has
    ``count`` > 0 and the engine is not ``full``. The engine holds
    :data:`~zeroskip.core.timing.LOAD_QUEUE` loads, the one transferring
    included. For the load at the head of its queue it offers one read
    request of ``pes * count`` words from ``src``; once the request is taken
    the head leaves the queue, and the ``j``-th word returned is written in
    the next cycle to lane ``j // count`` at ``dst_base + j % count`` of the
    load's region (``wr_*``, through the lanes' host write ports, which mask
    the word as they mask a host write). A load counts until its last word is
    written: ``busy`` falls in the cycle after. ``read_data`` is always ready
    while a transfer runs. ``flush`` drops the loads not yet requested (an
    error ended the run); the transfer under way completes.

    Parameters
    ----------
    config : AcceleratorConfig
        With an external memory (``ext_words`` > 0).

    Attributes
    ----------
    args : In(LoadArgs)
    args_error : Out(1)
        ``args`` reach outside their region or the external memory.
    push : In(1)
        Queue the load ``args`` (only while not ``full``; ``count`` > 0).
    full, busy : Out(1)
        The engine holds ``LOAD_QUEUE`` loads; it holds any.
    flush : In(1)
    read_req : Out(stream.Signature(ExtReadRequest))
    read_data : In(stream.Signature(32))
    wr_en : Out(1)
    wr_region : Out(LoadRegion)
    wr_lane : Out(range(pes))
    wr_addr : Out(16)
    wr_data : Out(32)
        The lane write: word ``wr_addr`` of lane ``wr_lane``'s ``wr_region``
        memory takes ``wr_data`` while ``wr_en``.
    """

    def __init__(self, config):
        check_config(config)
        if not config.ext_words:
            raise ValueError("the DMA engine needs an external memory (ext_words > 0)")
        super().__init__(config, {
            "args": In(LoadArgs),
            "args_error": Out(1),
            "push": In(1),
            "full": Out(1),
            "busy": Out(1),
            "flush": In(1),
            "read_req": Out(stream.Signature(ExtReadRequest(config))),
            "read_data": In(stream.Signature(unsigned(EXT_WORD_WIDTH))),
            "wr_en": Out(1),
            "wr_region": Out(LoadRegion),
            "wr_lane": Out(range(max(config.pes, 2))),
            "wr_addr": Out(16),
            "wr_data": Out(EXT_WORD_WIDTH),
        })

    def _check(self, m):
        """``args_error``: the operand check of ``LOAD`` (as the ISA model's ``check_load``)."""
        c = self._config
        mmap = MemoryMap(c)
        args = self.args
        depth = Signal(range(max(mmap.depth(r) for r in LOAD_REGIONS.values()) + 1))
        with m.Switch(args.region):
            for region, window in LOAD_REGIONS.items():
                with m.Case(region):
                    m.d.comb += depth.eq(mmap.depth(window))
        m.d.comb += self.args_error.eq((args.dst_base + args.count > depth)
                                       | (args.src + args.count * c.pes > c.ext_words))

    def elaborate(self, platform):
        c = self._config
        m = Module()
        self._check(m)

        entry = data.StructLayout({"args": LoadArgs, "words": unsigned(ext_len_width(c))})
        m.submodules.queue = queue = fifo.SyncFIFO(width=entry.size, depth=LOAD_QUEUE)
        head = entry(queue.r_data)
        pushed = Signal(entry)
        m.d.comb += [
            pushed.args.eq(self.args),
            pushed.words.eq(self.args.count * c.pes),
            queue.w_data.eq(pushed),
            queue.w_en.eq(self.push),
        ]

        # Loads held: pushed and neither written to the end nor flushed.
        held = Signal(range(LOAD_QUEUE + 1))
        written = Signal()          # the last word of a load is written
        dropped = Signal()          # a flushed load leaves the queue
        m.d.sync += held.eq(held + self.push - written - dropped)
        m.d.comb += [self.busy.eq(held != 0), self.full.eq(held == LOAD_QUEUE)]

        # The transfer under way.
        region = Signal(LoadRegion)
        dst = Signal(16)
        count = Signal(16)
        lane = Signal(range(c.pes + 1))
        word = Signal(16)
        last = (lane == c.pes - 1) & (word == count - 1)

        wr_last = Signal()
        m.d.sync += [self.wr_en.eq(0), wr_last.eq(0)]
        m.d.comb += written.eq(self.wr_en & wr_last)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.flush):
                    m.d.comb += [queue.r_en.eq(1), dropped.eq(queue.r_rdy)]
                with m.Else():
                    m.d.comb += [
                        self.read_req.valid.eq(queue.r_rdy),
                        self.read_req.payload.addr.eq(head.args.src),
                        self.read_req.payload.len.eq(head.words),
                    ]
                    with m.If(self.read_req.valid & self.read_req.ready):
                        m.d.comb += queue.r_en.eq(1)
                        m.d.sync += [region.eq(head.args.region), dst.eq(head.args.dst_base),
                                     count.eq(head.args.count), lane.eq(0), word.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.read_data.ready.eq(1)
                with m.If(self.read_data.valid):
                    m.d.sync += [self.wr_en.eq(1), self.wr_region.eq(region),
                                 self.wr_lane.eq(lane), self.wr_addr.eq(dst + word),
                                 self.wr_data.eq(self.read_data.payload), wr_last.eq(last)]
                    with m.If(word == count - 1):
                        m.d.sync += [word.eq(0), lane.eq(lane + 1)]
                    with m.Else():
                        m.d.sync += word.eq(word + 1)
                    with m.If(last):
                        m.next = "IDLE"
        return m
