"""The accelerator top level: host port, sequencer, gather and scatter networks, lanes,
move engine."""

from types import SimpleNamespace

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from zeroskip.core.config import check_generated
from zeroskip.core.isa import (
    CTRL_CLEAR,
    CTRL_START,
    EXT_BURST,
    HARDWARE_ID,
    STATUS_LAYOUT,
    ErrorCode,
    Format,
    LoadRegion,
    MemoryMap,
    Reg,
    Region,
)
from zeroskip.hdl.axil import READ_LATENCY, AxiLiteSignature, AxiLiteSlave
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.dma import DmaEngine
from zeroskip.hdl.extmem import ExtMemorySignature
from zeroskip.hdl.formats import column_mode
from zeroskip.hdl.gather import Gather
from zeroskip.hdl.lane import Lane
from zeroskip.hdl.layouts import operand_tag_layout
from zeroskip.hdl.move import MoveEngine
from zeroskip.hdl.nonzero import NonzeroDetector
from zeroskip.hdl.scatter import Scatter
from zeroskip.hdl.sequencer import Sequencer

__all__ = ["ZeroskipTop"]

COUNTER_WIDTH = 32


def _popcount(bits):
    return sum(bits[i] for i in range(len(bits)))


def _sum_tree(values):
    """The sum of ``values``, as a balanced tree of adders."""
    values = list(values)
    while len(values) > 1:
        pairs = [a + b for a, b in zip(values[::2], values[1::2])]
        if len(values) % 2:
            pairs.append(values[-1])
        values = pairs
    return values[0]


def _max_tree(values):
    """The largest of ``values`` (unsigned), as a balanced tree of comparisons."""
    values = list(values)
    while len(values) > 1:
        pairs = [Mux(a > b, a, b) for a, b in zip(values[::2], values[1::2])]
        if len(values) % 2:
            pairs.append(values[-1])
        values = pairs
    return values[0]


class ZeroskipTop(ConfigComponent):
    """A complete zeroskip accelerator behind an AXI4-Lite slave port.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    axil : In(AxiLiteSignature)
        The host port; its address map is :class:`~zeroskip.core.isa.MemoryMap`.
    irq : Out(1)
        High while the last run has ended (done or error) and no new run began.
    ext : Out(ExtMemorySignature)
        The external-memory port (only with ``config.ext_words``): the DMA
        engine's reads (``LOAD``) and the host's ``EXT_DATA`` reads and writes.
    """

    def __init__(self, config):
        check_generated(check_config(config), ext_port=True)
        self.memory_map = MemoryMap(config)
        members = {
            "axil": In(AxiLiteSignature(addr_width=MemoryMap.ADDR_WIDTH)),
            "irq": Out(1),
        }
        if config.ext_words:
            members["ext"] = Out(ExtMemorySignature(config))
        super().__init__(config, members)

    def elaborate(self, platform):
        config = self._config
        m = Module()

        m.submodules.host = host = AxiLiteSlave(addr_width=MemoryMap.ADDR_WIDTH)
        wiring.connect(m, wiring.flipped(self.axil), host.axil)
        bus = host.bus

        m.submodules.sequencer = seq = Sequencer(config)
        tag = operand_tag_layout(config)
        m.submodules.gather = gather = Gather(config, tag_shape=tag)
        lanes, scatter, lanes_busy, desc_error = self._lanes(m, seq, gather)
        m.d.comb += [
            seq.lanes_busy.eq(lanes_busy),
            seq.lanes_desc_error.eq(desc_error),
            seq.lanes_overflow.eq(Cat(lane.overflow for lane in lanes).any()),
            gather.rr_reset.eq(seq.start),
            self.irq.eq(seq.done | (seq.error != ErrorCode.NONE)),
        ]

        counters, clear = self._counters(m, seq, gather, scatter, lanes)
        dec = self._decode(bus, seq)
        ext_ok = Signal()
        self._host_writes(m, bus, dec, seq, gather, lanes, clear, ext_ok)
        ext = None
        if config.ext_words:
            self._dma_engine(m, seq, lanes)
            ext = self._ext_host(m, bus, ext_ok, dec.idle)
        self._host_reads(m, bus, dec, seq, lanes, counters, ext_ok, ext)
        return m

    def _lanes(self, m, seq, gather):
        """The lanes, the scatter network and the nonzero detector, started by ``seq``;
        returns the lanes, the scatter network (or ``None``), their busy and their
        descriptor error."""
        config = self._config
        scatter = None
        lanes = []
        for index in range(config.pes):
            lane = Lane(config)
            m.submodules[f"lane{index}"] = lane
            lanes.append(lane)
            wiring.connect(m, lane.req, gather.req[index])
            wiring.connect(m, gather.resp[index], lane.resp)
            m.d.comb += [
                lane.start.eq(seq.lane_start),
                lane.desc.eq(seq.desc),
                lane.epi.eq(seq.epi),
            ]
        if config.reduce:
            m.submodules.scatter = scatter = Scatter(config)
            for index, lane in enumerate(lanes):
                wiring.connect(m, lane.send, scatter.send[index])
                wiring.connect(m, scatter.recv[index], lane.recv)
                m.d.comb += [lane.reduce_start.eq(seq.reduce_start), lane.rdesc.eq(seq.rdesc)]
            m.d.comb += scatter.rr_reset.eq(seq.start)
        lanes_busy = Cat(lane.busy for lane in lanes).any()
        if config.reduce:
            lanes_busy = (lanes_busy | scatter.busy |
                          Cat(lane.receiving for lane in lanes).any())
        desc_error = Cat(lane.desc_error for lane in lanes).any()
        # The sequencer refuses disabled formats before dispatch; a lane's own
        # format check is a second line of defence.
        desc_error = desc_error | Cat(lane.fmt_error for lane in lanes).any()

        # Column mode: the nonzero detector reads x through the gather's banks
        # (idle in column mode) and broadcasts the nonzero columns to every
        # lane's column queue; an entry moves when every queue has room.
        if column_mode(config):
            m.submodules.detector = detector = NonzeroDetector(config)
            delay = [Signal(name=f"detector_start_{i}") for i in range(Lane.COUNT_LATENCY)]
            m.d.sync += delay[0].eq(seq.lane_start & (seq.desc.fmt == Format.CSC))
            m.d.sync += [later.eq(earlier) for earlier, later in zip(delay, delay[1:])]
            all_ready = Cat(lane.cols.ready for lane in lanes).all()
            m.d.comb += [
                detector.start.eq(delay[-1]),
                detector.x_base.eq(seq.desc.x_base),
                detector.count.eq(_max_tree(lane.cols_count for lane in lanes)),
                gather.scan_en.eq(detector.scan_en),
                gather.scan_addr.eq(detector.scan_addr),
                detector.scan_data.eq(gather.scan_data),
                detector.columns.ready.eq(all_ready),
            ]
            for lane in lanes:
                m.d.comb += [
                    lane.cols.valid.eq(detector.columns.valid & all_ready),
                    lane.cols.payload.eq(detector.columns.payload),
                ]
            lanes_busy = lanes_busy | detector.busy
        return lanes, scatter, lanes_busy, desc_error

    def _counters(self, m, seq, gather, scatter, lanes):
        """The performance counters (name -> signal, ``pe_busy`` a list) and their
        ``clear`` strobe."""
        config = self._config
        # Performance counters.
        cycles = Signal(COUNTER_WIDTH)
        insns = Signal(COUNTER_WIDTH)
        macs = Signal(COUNTER_WIDTH)
        skipped = Signal(COUNTER_WIDTH)
        stalls = Signal(COUNTER_WIDTH)
        scatter_stalls = Signal(COUNTER_WIDTH)
        pe_busy = [Signal(COUNTER_WIDTH, name=f"pe_busy{i}") for i in range(config.pes)]
        clear = Signal()
        # The stall pulses come late in the cycle (after the arbitration):
        # they are counted one cycle later. The host reads the counters only
        # while the accelerator is idle, when nothing is pending.
        stall_count = Signal(range(config.pes + 1))
        m.d.sync += stall_count.eq(_popcount(gather.stall))
        # So is the retire pulse, decoded from the instruction memory's output: its
        # count would otherwise ride the memory's clock-to-output into the adder.
        retired = Signal()
        m.d.sync += retired.eq(seq.retire)
        if config.reduce:
            scatter_stall_count = Signal(range(config.pes + 1))
            m.d.sync += scatter_stall_count.eq(_popcount(scatter.stall))
        with m.If(clear):
            m.d.sync += [c.eq(0) for c in (cycles, insns, macs, skipped, stalls, scatter_stalls,
                                           *pe_busy)]
        with m.Else():
            m.d.sync += [
                cycles.eq(cycles + seq.busy),
                insns.eq(insns + retired),
                macs.eq(macs + _popcount(Cat(lane.mac for lane in lanes))),
                skipped.eq(skipped + _popcount(Cat(lane.skip for lane in lanes)) +
                           (_sum_tree(lane.skip_bulk for lane in lanes)
                            if column_mode(config) else 0)),
                stalls.eq(stalls + stall_count),
            ]
            m.d.sync += [count.eq(count + lane.pe_busy) for count, lane in zip(pe_busy, lanes)]
            if config.reduce:
                m.d.sync += scatter_stalls.eq(scatter_stalls + scatter_stall_count)
        counters = {"cycles": cycles, "insns": insns, "macs": macs, "skipped": skipped,
                    "gather_stalls": stalls, "scatter_stalls": scatter_stalls,
                    "pe_busy": pe_busy}
        return counters, clear

    @staticmethod
    def _decode(bus, seq):
        """The fields of the register bus's address."""
        dec = SimpleNamespace(
            region=bus.addr[MemoryMap.REGION_SHIFT:],
            lane_index=bus.addr[MemoryMap.LANE_SHIFT:MemoryMap.REGION_SHIFT],
            word=bus.addr[2:MemoryMap.LANE_SHIFT],
            offset=bus.addr[:MemoryMap.REGION_SHIFT],
            aligned=bus.addr[:2] == 0,
            idle=~seq.busy)
        dec.in_window = lambda depth: dec.aligned & (dec.word < depth)
        return dec

    def _host_writes(self, m, bus, dec, seq, gather, lanes, clear, ext_ok):
        """The host's writes (and the move engine's use of the same ports)."""
        config = self._config
        mmap = self.memory_map
        region, lane_index, word, offset = dec.region, dec.lane_index, dec.word, dec.offset
        aligned, idle, in_window = dec.aligned, dec.idle, dec.in_window
        lane_ok = lane_index < config.pes
        # with the host, which uses them only while the accelerator is idle.
        host_x_we = Signal()
        out_addr, x_addr, x_data, x_we = word, word, bus.wdata, host_x_we
        if config.move:
            move = self._move_engine(m, seq, lanes)
            out_addr = Mux(move.busy, move.out_addr, word)
            x_addr = Mux(move.x_we, move.x_addr, word)
            x_data = Mux(move.x_we, move.x_data, bus.wdata)
            x_we = host_x_we | move.x_we
        for lane in lanes:
            m.d.comb += [lane.host_addr.eq(out_addr), lane.host_waddr.eq(word),
                         lane.host_wdata.eq(bus.wdata)]
        m.d.comb += [
            seq.host_addr.eq(bus.addr[2:]),
            seq.host_wdata.eq(bus.wdata),
            gather.host_addr.eq(x_addr),
            gather.host_wdata.eq(x_data),
            gather.host_we.eq(x_we),
        ]

        write_ok = Signal()
        with m.Switch(region):
            with m.Case(Region.CSR):
                m.d.comb += write_ok.eq((offset == Reg.CTRL) | ext_ok)
                with m.If(bus.we & (offset == Reg.CTRL)):
                    m.d.comb += [
                        seq.start.eq((bus.wdata & CTRL_START).any()),
                        seq.clear.eq((bus.wdata & CTRL_CLEAR).any()),
                        clear.eq((bus.wdata & CTRL_CLEAR).any() & idle),
                    ]
            with m.Case(Region.IMEM):
                m.d.comb += [
                    write_ok.eq(idle & aligned & (bus.addr[2:MemoryMap.REGION_SHIFT]
                                                  < mmap.depth(Region.IMEM))),
                    seq.host_we.eq(bus.we & write_ok),
                ]
            with m.Case(Region.X):
                m.d.comb += [
                    write_ok.eq(idle & in_window(config.x_depth)
                                & (lane_index == 0)),
                    host_x_we.eq(bus.we & write_ok),
                ]
            for region_id, strobe in ((Region.PTR, "host_we_ptr"), (Region.NZ, "host_we_nz"),
                                      (Region.META, "host_we_meta"),
                                      (Region.BIAS, "host_we_bias")):
                with m.Case(region_id):
                    m.d.comb += write_ok.eq(idle & lane_ok & in_window(mmap.depth(region_id)))
                    for index, lane in enumerate(lanes):
                        m.d.comb += getattr(lane, strobe).eq(
                            bus.we & write_ok & (lane_index == index))
        with m.If(bus.we):
            m.d.comb += bus.err.eq(~write_ok)
    def _host_reads(self, m, bus, dec, seq, lanes, counters, ext_ok, ext):
        """The host's reads: the CSRs, the counters, the lanes' ``out`` words and
        (``ext``: the address register, the word returned, whether the read is
        ``EXT_DATA``'s) the external memory's port."""
        config = self._config
        mmap = self.memory_map
        region, lane_index, offset = dec.region, dec.lane_index, dec.offset
        aligned, idle, in_window = dec.aligned, dec.idle, dec.in_window
        lane_ok = lane_index < config.pes
        # Reads: decode now, answer READ_LATENCY cycles later: the memories read
        # synchronously and each lane registers its word (``host_rdata``); the
        # CSR word is registered likewise, so the answer's multiplexer starts
        # at registers only.
        read_region = Signal.like(region)
        read_lane = Signal.like(lane_index)
        read_offset = Signal.like(offset)
        read_ok = Signal()
        with m.If(bus.re):
            m.d.sync += [read_region.eq(region), read_lane.eq(lane_index),
                         read_offset.eq(offset)]
            with m.Switch(region):
                with m.Case(Region.CSR):
                    m.d.sync += read_ok.eq(aligned)
                    if config.ext_words:
                        with m.If(self._ext_data(offset)):
                            m.d.sync += read_ok.eq(ext_ok)
                with m.Case(Region.OUT):
                    m.d.sync += read_ok.eq(idle & lane_ok & in_window(config.row_depth))
                with m.Default():
                    m.d.sync += read_ok.eq(0)

        csr_data = Signal(32)
        status = Signal(STATUS_LAYOUT)
        m.d.comb += [status.busy.eq(seq.busy), status.done.eq(seq.done),
                     status.error.eq(seq.error != ErrorCode.NONE), status.code.eq(seq.error)]
        with m.Switch(read_offset):
            for reg, value in (
                (Reg.ID, HARDWARE_ID),
                (Reg.CONFIG, mmap.config_word()),
                (Reg.FINGERPRINT, mmap.fingerprint_word()),
                (Reg.STATUS, status),
                (Reg.PC, seq.pc),
                (Reg.CYCLES, counters["cycles"]),
                (Reg.INSNS, counters["insns"]),
                (Reg.MACS, counters["macs"]),
                (Reg.SKIPPED, counters["skipped"]),
                (Reg.GATHER_STALLS, counters["gather_stalls"]),
                (Reg.SCATTER_STALLS, counters["scatter_stalls"]),
                *([(Reg.EXT_ADDR, ext[0])] if ext else []),
            ):
                with m.Case(reg):
                    m.d.comb += csr_data.eq(value)
            for index, count in enumerate(counters["pe_busy"]):
                with m.Case(mmap.pe_busy(index)):
                    m.d.comb += csr_data.eq(count)
            with m.Default():
                m.d.comb += csr_data.eq(0)

        for index in range(2, READ_LATENCY + 1):
            delayed = Signal(32, name=f"csr_data_{index}")
            m.d.sync += delayed.eq(csr_data)
            csr_data = delayed

        lane_data = Signal(32)
        with m.Switch(read_lane):
            for index, lane in enumerate(lanes):
                with m.Case(index):
                    m.d.comb += lane_data.eq(lane.host_rdata)
        m.d.comb += [
            bus.rdata.eq(Mux(read_region == Region.CSR, csr_data, lane_data)),
        ]
        if ext:
            with m.If(ext[2]):
                m.d.comb += bus.rdata.eq(ext[1])
        with m.If(~bus.we):
            m.d.comb += bus.err.eq(~read_ok)


    def _move_engine(self, m, seq, lanes):
        """The :class:`MoveEngine` of ``MOVE``, started by the sequencer ``seq``,
        reading the ``lanes``' ``out`` words."""
        m.submodules.move = move = MoveEngine(self._config)
        m.d.comb += [
            move.start.eq(seq.move_start),
            move.args.eq(seq.mdesc),
            seq.move_busy.eq(move.busy),
            seq.move_error.eq(move.desc_error),
        ]
        m.d.comb += [move.out_data[p].eq(lane.host_rdata) for p, lane in enumerate(lanes)]
        return move

    @staticmethod
    def _ext_data(offset):
        """``offset`` (of the CSR window) is a word of the ``EXT_DATA`` port."""
        return ((offset >= Reg.EXT_DATA) & (offset < Reg.EXT_DATA + 4 * EXT_BURST)
                & (offset[:2] == 0))

    def _dma_engine(self, m, seq, lanes):
        """The :class:`DmaEngine` of ``LOAD``, fed by the sequencer ``seq``, writing
        the ``lanes`` through their host write ports (the host writes only while
        the accelerator is idle, the engine only while it is busy)."""
        m.submodules.dma = dma = DmaEngine(self._config)
        m.d.comb += [
            dma.args.eq(seq.load_args),
            dma.push.eq(seq.load_push),
            dma.flush.eq(seq.load_flush),
            seq.load_error.eq(dma.args_error),
            seq.load_full.eq(dma.full),
            seq.loads_busy.eq(dma.busy),
        ]
        strobes = {LoadRegion.PTR: "host_we_ptr", LoadRegion.NZ: "host_we_nz",
                   LoadRegion.META: "host_we_meta", LoadRegion.BIAS: "host_we_bias"}
        with m.If(dma.wr_en):
            for index, lane in enumerate(lanes):
                m.d.comb += [lane.host_waddr.eq(dma.wr_addr), lane.host_wdata.eq(dma.wr_data)]
                for region, strobe in strobes.items():
                    m.d.comb += getattr(lane, strobe).eq(
                        (dma.wr_region == region) & (dma.wr_lane == index))
        self._dma = dma

    def _ext_host(self, m, bus, ext_ok, idle):
        """The host's ``EXT_ADDR`` register and ``EXT_DATA`` port on the external-memory
        port (shared with the DMA engine, which uses it only while the accelerator
        is busy, when the host's accesses answer ``SLVERR``). Drives ``ext_ok`` (the
        access on the bus is one of them and allowed) and ``bus.wait``; returns the
        address register, the word a read returned and whether the read in flight
        reads it."""
        c = self._config
        ext, dma = self.ext, self._dma
        offset = bus.addr[:MemoryMap.REGION_SHIFT]
        in_csr = bus.addr[MemoryMap.REGION_SHIFT:] == Region.CSR
        is_addr = in_csr & (offset == Reg.EXT_ADDR)
        is_data = in_csr & self._ext_data(offset)
        ext_addr = Signal(c.ext_addr_width + 1)    # ext_words after the last word
        ext_rdata = Signal(32)
        read_ext = Signal()                 # the read in flight is EXT_DATA's
        req_valid = Signal()                # the host's read request, not yet taken
        waiting = Signal()                  # the host's read word, not yet returned
        data_ok = idle & (ext_addr < c.ext_words)
        with m.If(bus.we):
            m.d.comb += ext_ok.eq(Mux(is_addr, bus.wdata < c.ext_words, is_data & data_ok))
        with m.Else():
            m.d.comb += ext_ok.eq(is_data & data_ok)

        # Writes: EXT_ADDR takes the word; EXT_DATA waits until the memory takes it.
        with m.If(bus.we & is_addr & ext_ok):
            m.d.sync += ext_addr.eq(bus.wdata)
        m.d.comb += [
            ext.write.valid.eq(bus.we & is_data & ext_ok),
            ext.write.payload.addr.eq(ext_addr),
            ext.write.payload.data.eq(bus.wdata),
        ]
        with m.If(ext.write.valid & ext.write.ready):
            m.d.sync += ext_addr.eq(ext_addr + 1)

        # Reads: a one-word request, then wait for its word.
        with m.If(bus.re):
            m.d.sync += [read_ext.eq(is_data), req_valid.eq(is_data & ext_ok),
                         waiting.eq(is_data & ext_ok)]
        with m.If(req_valid):
            m.d.comb += [ext.read_req.valid.eq(1), ext.read_req.payload.addr.eq(ext_addr),
                         ext.read_req.payload.len.eq(1)]
            with m.If(ext.read_req.ready):
                m.d.sync += [req_valid.eq(0), ext_addr.eq(ext_addr + 1)]
        with m.Else():
            m.d.comb += [ext.read_req.valid.eq(dma.read_req.valid),
                         ext.read_req.payload.eq(dma.read_req.payload),
                         dma.read_req.ready.eq(ext.read_req.ready)]
        with m.If(waiting):
            m.d.comb += ext.read_data.ready.eq(~req_valid)
            with m.If(~req_valid & ext.read_data.valid):
                m.d.sync += [ext_rdata.eq(ext.read_data.payload), waiting.eq(0)]
        with m.Else():
            m.d.comb += [dma.read_data.valid.eq(ext.read_data.valid),
                         dma.read_data.payload.eq(ext.read_data.payload),
                         ext.read_data.ready.eq(dma.read_data.ready)]
        m.d.comb += bus.wait.eq(waiting | (ext.write.valid & ~ext.write.ready))
        return ext_addr, ext_rdata, read_ext
