"""One lane of the PE array: its memories, decoder, PE and writeback.

::

    start/desc ─► CsrDecoder ─► req ──► (Gather) ──► resp ─► ProcessingElement ─► Writeback
                   │    │                                                       │     │
                  ptr   nz                                            bias (read)     out (r/w)

The lane owns the row-pointer (``ptr``), nonzero (``nz``), ``bias`` and
``out`` memories. The host writes ``ptr``, ``nz`` and ``bias`` and reads
``out`` while the lane is idle; the ``out`` read port is shared between the
host and the writeback.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..firmware.isa import EpiArgs, SpmvArgs, nz_entry_layout
from .decoder import CsrDecoder
from .layouts import gather_request_layout, gather_response_layout, operand_tag_layout
from .pe import ProcessingElement
from .writeback import Writeback

__all__ = ["Lane"]


class Lane(wiring.Component):
    """One PE lane for the CSR format.

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
        everything in flight has drained).
    desc_error : Out(1)
        Sticky until the next ``start``: the tile descriptor reaches outside a
        memory (see :class:`CsrDecoder`).
    overflow : Out(1)
        Sticky until the next ``start``: a partial sum left ``acc_width``.
    req : Out(stream.Signature(gather_request_layout(config, operand_tag_layout(config))))
        The decoder's tokens as gather requests (``skip`` for empty rows).
    resp : In(stream.Signature(gather_response_layout(config, operand_tag_layout(config))))
        ``x[addr]`` (zero when skipped) with the request's tag, in order.
    host_addr : In(16)
        Word address of the host access (truncated to the memory's depth).
    host_wdata : In(32)
    host_we_ptr, host_we_nz, host_we_bias : In(1)
        Write strobes; each memory takes the low bits of ``host_wdata``.
    host_rdata : Out(32)
        ``out[host_addr]`` sign-extended, the cycle after ``host_addr``
        (valid while the lane is idle).
    mac, skip, pe_busy : Out(1)
        Per-cycle pulses of the PE (see :class:`ProcessingElement`).
    """

    #: ``busy`` cycles of an ``SPMV`` minus its tokens minus the gather's
    #: latency (cycles from a request's transfer to its response's offer),
    #: when the gather takes a request and the PE a response every cycle.
    OVERHEAD = 12
    #: ``busy`` cycles of an ``SPMV`` whose tile has no rows (``n = 0``).
    EMPTY_BUSY = 4

    def __init__(self, config):
        self._config = config
        tag = operand_tag_layout(config)
        super().__init__({
            "start": In(1),
            "desc": In(SpmvArgs),
            "epi": In(EpiArgs),
            "busy": Out(1),
            "desc_error": Out(1),
            "overflow": Out(1),
            "req": Out(stream.Signature(gather_request_layout(config, tag))),
            "resp": In(stream.Signature(gather_response_layout(config, tag))),
            "host_addr": In(16),
            "host_wdata": In(32),
            "host_we_ptr": In(1),
            "host_we_nz": In(1),
            "host_we_bias": In(1),
            "host_rdata": Out(32),
            "mac": Out(1),
            "skip": Out(1),
            "pe_busy": Out(1),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        c = self._config
        m = Module()

        # Memories.
        m.submodules.ptr = ptr = Memory(
            shape=unsigned(c.ptr_width), depth=c.row_depth, init=[])
        m.submodules.nz = nz = Memory(shape=nz_entry_layout(c), depth=c.nz_depth, init=[])
        m.submodules.bias = bias = Memory(shape=signed(c.acc_width), depth=c.row_depth, init=[])
        m.submodules.out = out = Memory(shape=signed(c.acc_width), depth=c.row_depth, init=[])

        ptr_rd = ptr.read_port()
        nz_rd = nz.read_port()
        bias_rd = bias.read_port()
        out_rd = out.read_port()
        ptr_wr = ptr.write_port()
        nz_wr = nz.write_port()
        bias_wr = bias.write_port()
        out_wr = out.write_port()

        m.submodules.decoder = decoder = CsrDecoder(c)
        m.submodules.pe = pe = ProcessingElement(c)
        m.submodules.writeback = writeback = Writeback(c)

        # Instruction operands, latched at start.
        desc = Signal(SpmvArgs)
        epi = Signal(EpiArgs)
        with m.If(self.start):
            m.d.sync += [desc.eq(self.desc), epi.eq(self.epi)]

        # Decoder: memories and gather requests.
        m.d.comb += [
            decoder.start.eq(self.start),
            decoder.desc.eq(self.desc),
            ptr_rd.addr.eq(decoder.ptr_addr),
            decoder.ptr_data.eq(ptr_rd.data),
            nz_rd.addr.eq(decoder.nz_addr),
            nz_rd.en.eq(decoder.nz_en),
            decoder.nz_data.eq(nz_rd.data),

            self.req.valid.eq(decoder.tokens.valid),
            decoder.tokens.ready.eq(self.req.ready),
            self.req.payload.addr.eq(decoder.tokens.payload.addr),
            self.req.payload.skip.eq(decoder.tokens.payload.empty),
            self.req.payload.tag.value.eq(decoder.tokens.payload.value),
            self.req.payload.tag.row.eq(decoder.tokens.payload.row),
            self.req.payload.tag.last.eq(decoder.tokens.payload.last),
            self.req.payload.tag.empty.eq(decoder.tokens.payload.empty),
            self.desc_error.eq(decoder.error),
        ]

        # PE: gather responses in, row sums out to the writeback.
        m.d.comb += [
            pe.clear.eq(self.start),
            pe.input.valid.eq(self.resp.valid),
            self.resp.ready.eq(pe.input.ready),
            pe.input.payload.a.eq(self.resp.payload.tag.value),
            pe.input.payload.x.eq(self.resp.payload.data),
            pe.input.payload.row.eq(self.resp.payload.tag.row),
            pe.input.payload.last.eq(self.resp.payload.tag.last),
            pe.input.payload.empty.eq(self.resp.payload.tag.empty),
            self.mac.eq(pe.mac),
            self.skip.eq(pe.skip),
            self.pe_busy.eq(pe.busy),
        ]
        wiring.connect(m, pe.output, writeback.input)

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
            self.host_rdata.eq(out_rd.data),
            out_wr.addr.eq(writeback.wr_addr),
            out_wr.data.eq(writeback.wr_data),
            out_wr.en.eq(writeback.wr_en),
            self.overflow.eq(writeback.overflow),
        ]

        # Host writes.
        for port, strobe in ((ptr_wr, self.host_we_ptr), (nz_wr, self.host_we_nz),
                             (bias_wr, self.host_we_bias)):
            m.d.comb += [
                port.addr.eq(self.host_addr),
                port.data.eq(self.host_wdata),
                port.en.eq(strobe),
            ]

        # Requests in the gather network, not yet answered.
        in_flight = Signal(range(c.nz_depth + c.row_depth + 1))
        sent = self.req.valid & self.req.ready
        answered = self.resp.valid & self.resp.ready
        m.d.sync += in_flight.eq(in_flight + sent - answered)

        drained = ~decoder.busy & (in_flight == 0) & pe.idle & writeback.idle
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), in_flight.eq(0)]
        with m.Elif(drained):
            m.d.sync += self.busy.eq(0)
        return m
