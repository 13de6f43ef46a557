"""One lane of the PE array: its memories, decoders, PE, writeback and accumulator.

Row mode (CSR, COO, BITMAP, N:M, dense)::

    start/desc ─► FormatDecoder ─► req ──► (Gather) ──► resp ─► ProcessingElement ─► Writeback
                   │   │    │                                                       │     │
                  ptr  nz  meta                                          bias (read)     out (r/w)

Column mode (CSC, activation zero-skipping)::

    cols ─► ColumnQueue ─► CscDecoder ─► ProcessingElement ─► Accumulator ─┬─► out (no steps 2-4)
    (detector)              │   │    │                        (init, r-m-w) └─► psum ─► Writeback
                           ptr  nz  meta                                     (final pass) ─► out

The lane owns the row-pointer (``ptr``), nonzero (``nz``), ``meta``, ``bias``,
``out`` and, with column mode, ``psum`` memories. The host writes ``ptr``,
``nz``, ``meta`` and ``bias`` and reads ``out`` while the lane is idle; the
``out`` read port is shared between the host, the writeback and the
accumulator. Only the enabled formats' logic and memories are generated:
``meta`` exists with COO, BITMAP or CSC, ``psum`` and the column queue with
CSC, which also splits ``ptr`` into an even and an odd bank so that a
column's two pointer words are read in one cycle.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from zeroskip.core import timing
from zeroskip.core.isa import META_WIDTH, EpiArgs, Format, ReduceArgs, SpmvArgs, nz_entry_layout
from zeroskip.hdl.axil import READ_LATENCY
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.decoder import CscDecoder, FormatDecoder
from zeroskip.hdl.formats import column_mode, enabled_formats, row_formats, uses_meta
from zeroskip.hdl.layouts import (
    gather_request_layout,
    gather_response_layout,
    operand_tag_layout,
    pe_result_layout,
    token_layout,
)
from zeroskip.hdl.nonzero import ColumnQueue, nonzero_column_layout
from zeroskip.hdl.pe import ProcessingElement
from zeroskip.hdl.scatter import ReduceSource, send_layout
from zeroskip.hdl.skid import SkidBuffer
from zeroskip.hdl.writeback import Accumulator, Writeback

__all__ = ["Lane"]


class Lane(ConfigComponent):
    """One PE lane.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    start : In(1)
        One-cycle pulse starting an ``SPMV``; ``desc`` and ``epi`` are sampled
        in that cycle. Ignored by contract while ``busy``.
    desc : In(SpmvArgs)
    epi : In(EpiArgs)
    busy : Out(1)
        Registered: high from the cycle after ``start`` until every result of
        the instruction is in ``out`` (after a descriptor error: until
        everything in flight has drained and, in column mode, the columns
        have been consumed up to ``end``).
    desc_error : Out(1)
        Sticky until the next ``start``: the tile descriptor reaches outside a
        memory (see :class:`FormatDecoder` and :class:`CscDecoder`).
    fmt_error : Out(1)
        Sticky until the next ``start``: ``desc.fmt`` names a format the
        lane was generated without (or no format at all). Nothing runs.
    overflow : Out(1)
        Sticky until the next ``start``: a partial sum left ``acc_width``.
    req : Out(stream.Signature(gather_request_layout(config, operand_tag_layout(config))))
        Row mode: the decoder's tokens as gather requests (``skip`` for
        ``empty`` tokens).
    resp : In(stream.Signature(gather_response_layout(config, operand_tag_layout(config))))
        ``x[addr]`` (zero when skipped) with the request's tag, in order.
    cols : In(stream.Signature(nonzero_column_layout(config)))
        Column mode: the nonzero columns, then ``end``, into the lane's
        column queue. ``ready`` depends on registers only: it is high while
        fewer than ``COLUMN_CREDITS`` columns taken are not yet done with
        (the walker's last step on a column, or taking ``end``, releases
        one), or after a descriptor error while the queue has room.
    cols_count : Out(config.ptr_width)
        Column mode: the lane's column count ``c`` (0 after a header error),
        valid ``COUNT_LATENCY`` cycles after ``start``.
    host_addr : In(16)
        Word address of the host's ``out`` read (truncated to the memory's depth).
    host_waddr : In(16)
        Word address of the host's write (the DMA engine's too), truncated likewise.
    host_wdata : In(32)
    host_we_ptr, host_we_nz, host_we_meta, host_we_bias : In(1)
        Write strobes; each memory takes the low bits of ``host_wdata``.
    host_rdata : Out(32)
        ``out[host_addr]`` sign-extended, :data:`~zeroskip.hdl.axil.READ_LATENCY`
        cycles after ``host_addr`` (valid while the lane is idle; ``host_addr``
        held). The memory's output is registered before it leaves the lane,
        so no block RAM output meets the multiplexers of the lanes' words.
    mac, skip, pe_busy : Out(1)
        Per-cycle pulses of the PE (see :class:`ProcessingElement`).
    reduce_start : In(1)
        (With ``config.reduce``.) One-cycle pulse starting a ``REDUCE``;
        ``rdesc`` is sampled in that cycle. ``busy`` covers the lane's
        sending; ``receiving`` its additions of sums other lanes send.
    rdesc : In(ReduceArgs)
    send : Out(stream.Signature(send_layout(config)))
        The lane's partial sums into the :class:`~zeroskip.hdl.scatter.Scatter`.
    recv : In(stream.Signature(pe_result_layout(config)))
        Partial sums for this lane's ``out``; taken in every cycle.
    receiving : Out(1)
        An addition of a received sum is still in progress.
    skip_bulk : Out(config.ptr_width + 1)
        Column mode: the products skipped with their whole column (the
        entries of the columns whose activation is zero), in the last
        ``busy`` cycle of an instruction without error; 0 otherwise.
        ``SKIPPED`` adds it to the ``skip`` pulses.
    """

    #: ``busy`` cycles of a row-mode ``SPMV`` minus its tokens minus the
    #: gather's latency (cycles from a request's transfer to its response's
    #: offer), when the gather takes a request and the PE a response every
    #: cycle.
    OVERHEAD = 14
    #: ``busy`` cycles of a row-mode ``SPMV`` whose tile has no rows (``n = 0``).
    EMPTY_BUSY = 4
    #: Cycles from ``start`` to the cycle ``cols_count`` is valid.
    COUNT_LATENCY = CscDecoder.HEADER_LATENCY
    #: Entries of the column queue.
    COLUMN_QUEUE_DEPTH = timing.COLUMN_CREDITS
    #: Columns a lane may hold (queued or being walked) before it stops
    #: taking more: the nonzero detector's entry ``t`` moves once every lane
    #: has finished column ``t - COLUMN_CREDITS``.
    COLUMN_CREDITS = timing.COLUMN_CREDITS

    def __init__(self, config):
        check_config(config)
        tag = operand_tag_layout(config)
        members = {
            "start": In(1),
            "desc": In(SpmvArgs),
            "epi": In(EpiArgs),
            "busy": Out(1),
            "desc_error": Out(1),
            "fmt_error": Out(1),
            "overflow": Out(1),
            "req": Out(stream.Signature(gather_request_layout(config, tag))),
            "resp": In(stream.Signature(gather_response_layout(config, tag))),
            "cols": In(stream.Signature(nonzero_column_layout(config))),
            "cols_count": Out(config.ptr_width),
            "host_addr": In(16),
            "host_waddr": In(16),
            "host_wdata": In(32),
            "host_we_ptr": In(1),
            "host_we_nz": In(1),
            "host_we_meta": In(1),
            "host_we_bias": In(1),
            "host_rdata": Out(32),
            "mac": Out(1),
            "skip": Out(1),
            "pe_busy": Out(1),
            "skip_bulk": Out(config.ptr_width + 1),
        }
        if config.reduce:
            members.update({
                "reduce_start": In(1),
                "rdesc": In(ReduceArgs),
                "send": Out(stream.Signature(send_layout(config))),
                "recv": In(stream.Signature(pe_result_layout(config))),
                "receiving": Out(1),
            })
        super().__init__(config, members)

    def elaborate(self, platform):
        c = self._config
        m = Module()
        word = c.ptr_width
        columns = column_mode(c)
        rows = bool(row_formats(c))

        # Memories.
        m.submodules.nz = nz = Memory(shape=nz_entry_layout(c), depth=c.nz_depth, init=[])
        m.submodules.bias = bias = Memory(shape=signed(c.acc_width), depth=c.row_depth, init=[])
        m.submodules.out = out = Memory(shape=signed(c.acc_width), depth=c.row_depth, init=[])
        nz_rd = nz.read_port()
        bias_rd = bias.read_port()
        out_rd = out.read_port()
        nz_wr = nz.write_port()
        bias_wr = bias.write_port()
        out_wr = out.write_port()
        host_writes = [(nz_wr, self.host_we_nz, self.host_waddr),
                       (bias_wr, self.host_we_bias, self.host_waddr)]

        # ptr: one memory, or (column mode) an even and an odd bank. Word ``a``
        # is in bank ``a % 2`` at ``a // 2``; reading the even bank at
        # ``(a + 1) // 2`` and the odd one at ``a // 2`` returns words ``a``
        # and ``a + 1`` in one cycle.
        ptr_addr = Signal(c.row_addr_width)
        ptr_data = Signal(word)
        ptr_data_next = Signal(word)
        if columns:
            half = c.row_depth // 2
            m.submodules.ptr_even = ptr_even = Memory(shape=unsigned(word), depth=half, init=[])
            m.submodules.ptr_odd = ptr_odd = Memory(shape=unsigned(word), depth=half, init=[])
            even_rd, odd_rd = ptr_even.read_port(), ptr_odd.read_port()
            odd_q = Signal()
            m.d.sync += odd_q.eq(ptr_addr[0])
            m.d.comb += [
                even_rd.addr.eq((ptr_addr >> 1) + ptr_addr[0]),
                odd_rd.addr.eq(ptr_addr >> 1),
                ptr_data.eq(Mux(odd_q, odd_rd.data, even_rd.data)),
                ptr_data_next.eq(Mux(odd_q, even_rd.data, odd_rd.data)),
            ]
            for bank, parity in ((ptr_even, 0), (ptr_odd, 1)):
                port = bank.write_port()
                m.d.comb += [
                    port.addr.eq(self.host_waddr[1:]),
                    port.data.eq(self.host_wdata),
                    port.en.eq(self.host_we_ptr & (self.host_waddr[0] == parity)),
                ]
        else:
            m.submodules.ptr = ptr = Memory(shape=unsigned(word), depth=c.row_depth, init=[])
            ptr_rd = ptr.read_port()
            m.d.comb += [ptr_rd.addr.eq(ptr_addr), ptr_data.eq(ptr_rd.data)]
            host_writes.append((ptr.write_port(), self.host_we_ptr, self.host_waddr))

        if uses_meta(c):
            m.submodules.meta = meta = Memory(shape=unsigned(META_WIDTH), depth=c.nz_depth,
                                              init=[])
            meta_rd = meta.read_port()
            host_writes.append((meta.write_port(), self.host_we_meta, self.host_waddr))
            meta_addr, meta_en, meta_data = meta_rd.addr, meta_rd.en, meta_rd.data
        else:
            meta_addr, meta_en, meta_data = Signal(c.nz_addr_width), Signal(), Signal(META_WIDTH)

        for port, strobe, addr in host_writes:
            m.d.comb += [port.addr.eq(addr), port.data.eq(self.host_wdata), port.en.eq(strobe)]

        m.submodules.decoder = decoder = FormatDecoder(c)
        m.submodules.pe = pe = ProcessingElement(c)
        m.submodules.writeback = writeback = Writeback(c)

        # Instruction operands, latched at start; the mode of the instruction.
        desc = Signal(SpmvArgs)
        rdesc = Signal(ReduceArgs)
        epi = Signal(EpiArgs)
        known = enabled_formats(c)
        fmt_ok = Signal()
        start_rows = Signal()
        start_columns = Signal()
        for fmt in sorted(known, key=lambda f: f.value):  # a stable order: reproducible Verilog
            with m.If(self.desc.fmt == fmt):
                m.d.comb += fmt_ok.eq(1)
        m.d.comb += [
            start_columns.eq(self.start & (self.desc.fmt == Format.CSC) if columns else 0),
            start_rows.eq(self.start & fmt_ok & (self.desc.fmt != Format.CSC)),
        ]
        col_mode = Signal()                 # the running instruction is column mode
        use_psum = Signal()                 # column mode: steps 2-4 in a final pass
        with m.If(self.start):
            m.d.sync += [
                desc.eq(self.desc), epi.eq(self.epi),
                col_mode.eq(start_columns),
                use_psum.eq(self.desc.accumulate | self.desc.bias | self.desc.epilogue),
                self.fmt_error.eq(~fmt_ok),
            ]
        mode_cols = Mux(self.start, start_columns, col_mode)

        # Row-mode decoder: memories and gather requests. The skid buffer
        # keeps the gather's grant logic out of the decoder's timing paths.
        m.submodules.skid = skid = SkidBuffer(token_layout(c))
        wiring.connect(m, decoder.tokens, skid.input)
        tokens = skid.output
        m.d.comb += [
            decoder.start.eq(start_rows),
            decoder.desc.eq(self.desc),
            decoder.ptr_data.eq(ptr_data),
            decoder.nz_data.eq(nz_rd.data),
            decoder.meta_data.eq(meta_data),

            skid.clear.eq(self.start),
            self.req.valid.eq(tokens.valid),
            tokens.ready.eq(self.req.ready),
            self.req.payload.addr.eq(tokens.payload.addr),
            self.req.payload.skip.eq(tokens.payload.empty),
            self.req.payload.tag.value.eq(tokens.payload.value),
            self.req.payload.tag.row.eq(tokens.payload.row),
            self.req.payload.tag.last.eq(tokens.payload.last),
            self.req.payload.tag.empty.eq(tokens.payload.empty),
        ]
        with m.If(mode_cols):
            pass
        with m.Else():
            m.d.comb += [
                ptr_addr.eq(decoder.ptr_addr),
                nz_rd.addr.eq(decoder.nz_addr),
                nz_rd.en.eq(decoder.nz_en),
                meta_addr.eq(decoder.meta_addr),
                meta_en.eq(1),
            ]

        # PE: gather responses (row mode) or the column decoder's products in.
        m.d.comb += [
            pe.clear.eq(self.start),
            self.mac.eq(pe.mac),
            self.skip.eq(pe.skip),
            self.pe_busy.eq(pe.busy),
        ]
        with m.If(~col_mode):
            m.d.comb += [
                pe.input.valid.eq(self.resp.valid),
                self.resp.ready.eq(pe.input.ready),
                pe.input.payload.a.eq(self.resp.payload.tag.value),
                pe.input.payload.x.eq(self.resp.payload.data),
                pe.input.payload.row.eq(self.resp.payload.tag.row),
                pe.input.payload.last.eq(self.resp.payload.tag.last),
                pe.input.payload.empty.eq(self.resp.payload.tag.empty),
                writeback.input.valid.eq(pe.output.valid),
                pe.output.ready.eq(writeback.input.ready),
                writeback.input.payload.eq(pe.output.payload),
            ]

        # Writeback: bias and out memories; out's read port is shared with
        # the host (which only reads while the lane is idle).
        m.d.comb += [
            writeback.clear.eq(self.start),
            writeback.out_base.eq(desc.out_base),
            writeback.accumulate.eq(desc.accumulate),
            writeback.bias.eq(desc.bias),
            writeback.epilogue.eq(desc.epilogue),
            writeback.epi.eq(epi),
            bias_rd.addr.eq(writeback.rd_addr),
            writeback.bias_data.eq(bias_rd.data),
            out_rd.addr.eq(Mux(self.busy, writeback.rd_addr, self.host_addr)),
            writeback.out_data.eq(out_rd.data),
            out_wr.addr.eq(writeback.wr_addr),
            out_wr.data.eq(writeback.wr_data),
            out_wr.en.eq(writeback.wr_en),
        ]
        # The host's (and the move engine's) read: registered at the memory.
        host_rdata = out_rd.data
        for index in range(1, READ_LATENCY):
            delayed = Signal.like(out_rd.data, name=f"host_rdata_{index}")
            m.d.sync += delayed.eq(host_rdata)
            host_rdata = delayed
        m.d.comb += self.host_rdata.eq(host_rdata)

        # Requests in the gather network, not yet answered.
        # A request is counted in the cycle after it was sent (the grant comes
        # late in the cycle); its response comes at least two cycles after it.
        in_flight = Signal(range(c.nz_depth + c.row_depth + 1))
        sent = Signal()
        answered = self.resp.valid & self.resp.ready
        m.d.sync += [sent.eq(self.req.valid & self.req.ready),
                     in_flight.eq(in_flight + sent - answered)]
        rows_drained = (~decoder.busy & ~tokens.valid & ~sent & (in_flight == 0) & pe.idle &
                        writeback.idle)
        drained = Signal()
        m.d.comb += drained.eq(rows_drained)
        desc_error = decoder.error
        overflow = writeback.overflow

        if columns:
            m.submodules.psum = psum = Memory(shape=signed(c.acc_width), depth=c.row_depth,
                                              init=[])
            psum_rd = psum.read_port()
            psum_wr = psum.write_port()
            m.submodules.queue = queue = ColumnQueue(c, depth=self.COLUMN_QUEUE_DEPTH)
            m.submodules.csc = csc = CscDecoder(c)
            m.submodules.accumulator = acc = Accumulator(c)
            wiring.connect(m, queue.output, csc.columns)
            credits = Signal(range(self.COLUMN_CREDITS + 1))
            pushed = self.cols.valid & self.cols.ready
            m.d.comb += [
                queue.input.valid.eq(pushed),
                queue.input.payload.eq(self.cols.payload),
                self.cols.ready.eq(Mux(csc.error, queue.input.ready,
                                       credits != self.COLUMN_CREDITS)),
            ]
            m.d.sync += credits.eq(credits + pushed - csc.released)
            with m.If(self.start):
                m.d.sync += credits.eq(0)

            phase_columns = Signal()        # the rows are being (or have been) zeroed
            flushed = Signal()              # the final pass has been started
            m.d.comb += [
                queue.flush.eq(self.start),
                csc.start.eq(start_columns),
                csc.desc.eq(self.desc),
                csc.ptr_data.eq(ptr_data),
                csc.ptr_data_next.eq(ptr_data_next),
                csc.nz_data.eq(nz_rd.data),
                csc.meta_data.eq(meta_data),
                csc.enable.eq(phase_columns & acc.initialised),
                self.cols_count.eq(csc.count),

                acc.clear.eq(self.start),
                acc.base.eq(desc.out_base),
                acc.rows.eq(csc.rows),
                acc.init.eq(csc.header_ok),
                psum_rd.addr.eq(acc.rd_addr),
                psum_rd.en.eq(acc.rd_en),
                psum_wr.addr.eq(acc.wr_addr),
                psum_wr.data.eq(acc.wr_data),
                psum_wr.en.eq(acc.wr_en & use_psum),
            ]
            with m.If(mode_cols):
                m.d.comb += [
                    ptr_addr.eq(csc.ptr_addr),
                    nz_rd.addr.eq(csc.nz_addr),
                    nz_rd.en.eq(csc.nz_en),
                    meta_addr.eq(csc.meta_addr),
                    meta_en.eq(csc.nz_en),
                ]
            with m.If(col_mode):
                wiring.connect(m, csc.products, pe.input)
                wiring.connect(m, pe.output, acc.input)
                wiring.connect(m, acc.output, writeback.input)
                with m.If(~use_psum):
                    # Plain column mode: the sums are accumulated in ``out``.
                    m.d.comb += [
                        acc.rd_data.eq(out_rd.data),
                        out_wr.addr.eq(acc.wr_addr),
                        out_wr.data.eq(acc.wr_data),
                        out_wr.en.eq(acc.wr_en),
                        out_rd.en.eq(acc.rd_en | ~self.busy),
                    ]
                    with m.If(self.busy):
                        m.d.comb += out_rd.addr.eq(acc.rd_addr)
                with m.Else():
                    m.d.comb += acc.rd_data.eq(psum_rd.data)

            with m.If(csc.header_ok):
                m.d.sync += phase_columns.eq(1)
            columns_done = ~csc.busy & pe.idle & acc.idle
            flush = Signal()
            m.d.comb += [
                flush.eq(col_mode & self.busy & ~self.start & columns_done & phase_columns &
                         use_psum & ~csc.error & ~flushed),
                acc.flush.eq(flush),
            ]
            with m.If(flush):
                m.d.sync += flushed.eq(1)
            with m.If(self.start):
                m.d.sync += [phase_columns.eq(0), flushed.eq(0)]
            cols_drained = (columns_done & ~flush & writeback.idle &
                            (flushed | ~use_psum | csc.error | ~phase_columns))
            m.d.comb += drained.eq(Mux(col_mode, cols_drained, rows_drained))
            desc_error = desc_error | csc.error
            overflow = overflow | acc.overflow
            with m.If(col_mode & self.busy & ~self.start & cols_drained & ~csc.error):
                m.d.comb += self.skip_bulk.eq(csc.unvisited)
        elif not rows:
            m.d.comb += drained.eq(1)

        start = self.start
        if c.reduce:
            # REDUCE: the source reads the route list and the partial sums
            # (a second read port of ``out``); the reducer adds the sums other
            # lanes send into ``out`` (the writeback's port), one per cycle.
            m.submodules.source = source = ReduceSource(c)
            m.submodules.reducer = reducer = Accumulator(c)
            out_src = out.read_port()
            red_mode = Signal()         # the last instruction was a REDUCE
            with m.If(self.reduce_start):
                m.d.sync += [red_mode.eq(1), rdesc.eq(self.rdesc), col_mode.eq(0)]
            with m.Elif(self.start):
                m.d.sync += red_mode.eq(0)
            wiring.connect(m, source.send, wiring.flipped(self.send))
            wiring.connect(m, wiring.flipped(self.recv), reducer.input)
            m.d.comb += [
                source.start.eq(self.reduce_start),
                source.desc.eq(self.rdesc),
                source.ptr_data.eq(ptr_data),
                source.out_data.eq(out_src.data),
                out_src.addr.eq(source.out_addr),
                reducer.clear.eq(self.reduce_start),
                reducer.base.eq(rdesc.dst_base),
                reducer.output.ready.eq(1),
                self.receiving.eq(~reducer.idle),
            ]
            reducing = red_mode & ~self.start
            with m.If(reducing | self.reduce_start):
                m.d.comb += ptr_addr.eq(source.ptr_addr)
            with m.If(reducing):
                m.d.comb += [
                    reducer.rd_data.eq(out_rd.data),
                    out_wr.addr.eq(reducer.wr_addr),
                    out_wr.data.eq(reducer.wr_data),
                    out_wr.en.eq(reducer.wr_en),
                ]
                with m.If(self.busy | self.recv.valid):
                    m.d.comb += out_rd.addr.eq(reducer.rd_addr)
                m.d.comb += drained.eq(~source.busy)
            desc_error = desc_error | (red_mode & source.error)
            overflow = overflow | (red_mode & reducer.overflow)
            start = start | self.reduce_start

        m.d.comb += [
            self.desc_error.eq(desc_error),
            self.overflow.eq(overflow),
        ]
        with m.If(start):
            m.d.sync += [self.busy.eq(1), in_flight.eq(0), sent.eq(0)]
        with m.Elif(drained):
            m.d.sync += self.busy.eq(0)
        return m
