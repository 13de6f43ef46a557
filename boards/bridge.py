"""UART-to-AXI4-Lite bridge: the host link of a board.

:class:`UartAxiBridge` parses command frames from a byte stream (the UART
receiver), checks their CRC-16, executes them as AXI4-Lite transactions and
answers each with a response frame on another byte stream (the UART
transmitter). The frame format, the checksum and the rules for corrupted,
truncated and retransmitted frames are those of
:mod:`zeroskip.boards.protocol` (its module documentation is normative);
this module takes every constant from there. In short:

- command ``A5 op seq count addr[4] data[4*count] crc16`` and response
  ``5A seq count data[4*count] status index crc16``;
- a write is buffered whole (up to ``MAX_BURST`` words in a block RAM) and
  applied only after its checksum is verified, so a corrupted frame never has
  an effect;
- a frame with a bad checksum, a bad header or a gap longer than
  ``timeout_cycles`` between two bytes is dropped; the bridge answers NAK
  once the line has been idle for ``timeout_cycles``;
- the sequence number, op and answer of the last executed command are kept:
  a retransmitted write (same sequence number) is answered again from them
  with ``STATUS_REPLAYED`` and not applied a second time;
- AXI ``SLVERR`` (or ``DECERR``) is reported as ``STATUS_SLVERR`` with the
  index of the first word that answered it.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from zeroskip.boards import protocol as p
from zeroskip.hdl.axil import AxiLiteSignature

__all__ = ["UartAxiBridge", "crc16_step"]

#: Width of the inter-byte timeout counter (it counts prescaled ticks).
TIMER_BITS = 8


def _crc16_matrix():
    """For each CRC output bit, the input bits it is the XOR of.

    Inputs 0 to 15 are the CRC bits, 16 to 23 the data byte's bits.
    """
    crc = [frozenset([i]) for i in range(16)]
    data = [frozenset([16 + i]) for i in range(8)]
    for i in range(8):
        crc[8 + i] = crc[8 + i] ^ data[i]
    for _ in range(8):
        top = crc[15]
        shifted = [frozenset()] + crc[:15]
        crc = [bit ^ top if p.CRC_POLY >> index & 1 else bit
               for index, bit in enumerate(shifted)]
    return crc


_CRC16_MATRIX = _crc16_matrix()


def crc16_step(crc, byte):
    """CRC-16/CCITT-FALSE of ``crc`` after ``byte``, as an XOR network.

    Parameters
    ----------
    crc : Value, 16 bits
    byte : Value, 8 bits

    Returns
    -------
    Value, 16 bits
    """
    inputs = Cat(crc, byte)
    bits = []
    for terms in _CRC16_MATRIX:
        value = Const(0, 1)
        for index in sorted(terms):
            value = value ^ inputs[index]
        bits.append(value)
    return Cat(*bits)


class UartAxiBridge(wiring.Component):
    """Framed, checksummed, acknowledged bridge from bytes to AXI4-Lite.

    Parameters
    ----------
    timeout_cycles : int
        Clock cycles without a byte after which a frame in progress is
        dropped (and the time the line must stay idle before a NAK is sent);
        several byte times at the baud rate in use. Long timeouts are counted
        in ticks of a prescaler and may last up to one tick (under 1/256 of
        the timeout) longer.
    addr_width : int
        Width of the AXI4-Lite addresses; addresses at or above
        ``2 ** addr_width`` answer ``STATUS_SLVERR`` without an access.

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Bytes from the host.
    tx : Out(stream.Signature(8))
        Bytes to the host.
    axil : Out(AxiLiteSignature(addr_width=addr_width))
        The AXI4-Lite manager port.
    active : Out(1)
        High while a frame is received, executed or answered.
    nak : Out(1)
        Pulses when a frame was dropped (a NAK is about to be sent).
    replay : Out(1)
        Pulses when a retransmitted write is answered without being applied.
    """

    def __init__(self, *, timeout_cycles, addr_width=p.ADDR_WIDTH):
        if not isinstance(timeout_cycles, int) or isinstance(timeout_cycles, bool) \
                or timeout_cycles < 1:
            raise TypeError(f"Timeout must be a positive integer number of cycles, "
                            f"not {timeout_cycles!r}")
        if not isinstance(addr_width, int) or not 3 <= addr_width <= 32:
            raise TypeError(f"Address width must be an integer from 3 to 32, not {addr_width!r}")
        self._timeout_cycles = timeout_cycles
        self._addr_width = addr_width
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "axil": Out(AxiLiteSignature(addr_width=addr_width)),
            "active": Out(1),
            "nak": Out(1),
            "replay": Out(1),
        })

    @property
    def timeout_cycles(self):
        return self._timeout_cycles

    def elaborate(self, platform):
        m = Module()
        rx, tx, axil = self.rx, self.tx, self.axil
        burst = p.MAX_BURST

        m.submodules.buffer = buffer = memory.Memory(shape=32, depth=burst, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port()

        # The command being received.
        op = Signal(8)
        seq = Signal(8)
        count = Signal(8)
        addr = Signal(32)
        crc = Signal(16)
        header_index = Signal(range(8))
        byte_index = Signal(2)
        word_index = Signal(range(burst))
        word = Signal(32)
        byte = rx.payload
        crc_next = crc16_step(crc, byte)

        # Execution and the answer.
        status = Signal(8)
        index = Signal(8)
        error_seen = Signal()
        out_word = Signal(32)
        rsp_count = Signal(8)
        rsp_read = Signal()
        rsp_ping = Signal()
        crc_tx = Signal(16, init=p.CRC_INIT)
        aw_done = Signal()
        w_done = Signal()

        # The last executed command.
        last_valid = Signal()
        last_seq = Signal(8)
        last_write = Signal()
        last_status = Signal(8)
        last_index = Signal(8)

        # The inter-byte timeout counts ticks of a free-running prescaler, so
        # that no long counter sits on the critical path: it expires after
        # ``timeout_cycles`` rounded up to a whole number of ticks.
        shift = max(0, (self._timeout_cycles - 1).bit_length() - TIMER_BITS)
        ticks = -(-self._timeout_cycles // (1 << shift))
        tick = Signal()
        if shift:
            prescaler = Signal(shift)
            m.d.sync += prescaler.eq(prescaler + 1)
            m.d.comb += tick.eq(prescaler.all())
        else:
            m.d.comb += tick.eq(1)
        timer = Signal(range(ticks + 1), init=ticks)
        expired = timer == 0
        take = rx.valid & rx.ready
        with m.If(take):
            m.d.sync += timer.eq(ticks)
        with m.Elif(tick & ~expired):
            m.d.sync += timer.eq(timer - 1)

        # ``addr`` walks the burst; words at or above 2 ** addr_width are not accessed.
        out_of_range = addr[self._addr_width:] != 0
        m.d.comb += [
            rd.addr.eq(word_index),
            wr.addr.eq(word_index),
            wr.data.eq(Cat(word[8:], byte)),
            axil.awaddr.eq(addr[:self._addr_width]),
            axil.araddr.eq(addr[:self._addr_width]),
            axil.wdata.eq(rd.data),
            axil.wstrb.eq(0b1111),
        ]

        # One checksum network for every byte sent.
        tx_checksum = Signal()
        with m.If(tx.valid & tx.ready & tx_checksum):
            m.d.sync += crc_tx.eq(crc16_step(crc_tx, tx.payload))

        def send(value, next_state, *, checksum=True):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(value), tx_checksum.eq(checksum)]
            with m.If(tx.ready):
                m.next = next_state

        def record_error():
            with m.If(~error_seen):
                m.d.sync += [status.eq(p.STATUS_SLVERR), index.eq(word_index),
                             error_seen.eq(1)]

        def start_nak():
            m.d.comb += self.nak.eq(1)
            m.d.sync += [status.eq(p.STATUS_NAK), index.eq(0), rsp_count.eq(0),
                         rsp_read.eq(0), rsp_ping.eq(0)]
            m.next = "RSP_SYNC"

        op_ok = (op == p.OP_PING) | (op == p.OP_READ) | (op == p.OP_WRITE)
        count_ok = Signal()
        with m.If(op == p.OP_PING):
            m.d.comb += count_ok.eq(count == 0)
        with m.Else():
            m.d.comb += count_ok.eq((count != 0) & (count <= burst))

        with m.FSM() as fsm:
            m.d.comb += self.active.eq(~fsm.ongoing("IDLE"))

            # Receiving a command.
            with m.State("IDLE"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid & (byte == p.SYNC_CMD)):
                    m.d.sync += [crc.eq(p.CRC_INIT), header_index.eq(0), seq.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += [crc.eq(crc_next), header_index.eq(header_index + 1)]
                    with m.Switch(header_index):
                        with m.Case(0):
                            m.d.sync += op.eq(byte)
                        with m.Case(1):
                            m.d.sync += seq.eq(byte)
                        with m.Case(2):
                            m.d.sync += count.eq(byte)
                        with m.Default():
                            m.d.sync += addr.eq(Cat(addr[8:], byte))
                    with m.If(header_index == 6):
                        m.d.sync += [word_index.eq(0), byte_index.eq(0)]
                        with m.If(~op_ok | ~count_ok):
                            m.next = "DISCARD"
                        with m.Elif(op == p.OP_WRITE):
                            m.next = "DATA"
                        with m.Else():
                            m.next = "CRC_HIGH"
                with m.Elif(expired):
                    start_nak()
            with m.State("DATA"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += [crc.eq(crc_next), word.eq(Cat(word[8:], byte)),
                                 byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == 3):
                        m.d.comb += wr.en.eq(1)
                        m.d.sync += word_index.eq(word_index + 1)
                        with m.If(word_index == count - 1):
                            m.next = "CRC_HIGH"
                with m.Elif(expired):
                    start_nak()
            with m.State("CRC_HIGH"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += crc.eq(crc_next)
                    m.next = "CRC_LOW"
                with m.Elif(expired):
                    start_nak()
            with m.State("CRC_LOW"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    with m.If(crc_next == 0):
                        m.next = "EXECUTE"
                    with m.Else():
                        m.next = "DISCARD"
                with m.Elif(expired):
                    start_nak()
            with m.State("DISCARD"):
                # Drop bytes until the line has been idle for the timeout.
                m.d.comb += rx.ready.eq(1)
                with m.If(~rx.valid & expired):
                    start_nak()

            # Executing it.
            with m.State("EXECUTE"):
                m.d.comb += rx.ready.eq(1)
                m.d.sync += [word_index.eq(0), error_seen.eq(0),
                             status.eq(p.STATUS_OK), index.eq(0),
                             rsp_read.eq(op == p.OP_READ), rsp_ping.eq(op == p.OP_PING),
                             rsp_count.eq(0)]
                duplicate = last_valid & last_write & (last_seq == seq)
                with m.If(op == p.OP_WRITE):
                    with m.If(duplicate):
                        m.d.comb += self.replay.eq(1)
                        m.d.sync += [status.eq(last_status | p.STATUS_REPLAYED),
                                     index.eq(last_index)]
                        m.next = "RSP_SYNC"
                    with m.Else():
                        m.next = "WRITE_FETCH"
                with m.Else():
                    m.d.sync += [last_valid.eq(1), last_seq.eq(seq), last_write.eq(0)]
                    m.d.sync += rsp_count.eq(Mux(op == p.OP_READ, count, 1))
                    m.next = "RSP_SYNC"
            with m.State("WRITE_FETCH"):
                # The buffer's read port answers one cycle after its address.
                m.d.comb += rx.ready.eq(1)
                m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                with m.If(out_of_range):
                    record_error()
                    m.next = "WRITE_DONE"
                with m.Else():
                    m.next = "WRITE_ADDR"
            with m.State("WRITE_ADDR"):
                m.d.comb += [rx.ready.eq(1), axil.awvalid.eq(~aw_done),
                             axil.wvalid.eq(~w_done)]
                aw_now = aw_done | axil.awready
                w_now = w_done | axil.wready
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.next = "WRITE_RESP"
            with m.State("WRITE_RESP"):
                m.d.comb += [rx.ready.eq(1), axil.bready.eq(1)]
                with m.If(axil.bvalid):
                    with m.If(axil.bresp.as_value()[1]):
                        record_error()
                        m.next = "WRITE_DONE"
                    with m.Elif(word_index == count - 1):
                        m.next = "WRITE_DONE"
                    with m.Else():
                        m.d.sync += [word_index.eq(word_index + 1), addr.eq(addr + 4)]
                        m.next = "WRITE_FETCH"
            with m.State("WRITE_DONE"):
                m.d.comb += rx.ready.eq(1)
                m.d.sync += [last_valid.eq(1), last_seq.eq(seq), last_write.eq(1),
                             last_status.eq(status), last_index.eq(index)]
                m.next = "RSP_SYNC"

            # Answering.
            with m.State("RSP_SYNC"):
                m.d.comb += rx.ready.eq(1)
                m.d.sync += [word_index.eq(0), crc_tx.eq(p.CRC_INIT)]
                send(p.SYNC_RSP, "RSP_SEQ", checksum=False)
            with m.State("RSP_SEQ"):
                m.d.comb += rx.ready.eq(1)
                send(seq, "RSP_COUNT")
            with m.State("RSP_COUNT"):
                m.d.comb += rx.ready.eq(1)
                m.d.sync += [byte_index.eq(0), out_word.eq(p.ping_word(burst))]
                with m.If(rsp_read):
                    send(rsp_count, "READ_ADDR")
                with m.Elif(rsp_ping):
                    send(rsp_count, "PING_DATA")
                with m.Else():
                    send(rsp_count, "RSP_STATUS")
            with m.State("PING_DATA"):
                m.d.comb += rx.ready.eq(1)
                send(out_word[:8], "PING_DATA")
                with m.If(tx.ready):
                    m.d.sync += [out_word.eq(out_word >> 8), byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == 3):
                        m.next = "RSP_STATUS"
            with m.State("READ_ADDR"):
                m.d.comb += rx.ready.eq(1)
                m.d.sync += byte_index.eq(0)
                with m.If(out_of_range):
                    record_error()
                    m.d.sync += out_word.eq(0)
                    m.next = "READ_DATA"
                with m.Else():
                    m.d.comb += axil.arvalid.eq(1)
                    with m.If(axil.arready):
                        m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                m.d.comb += [rx.ready.eq(1), axil.rready.eq(1)]
                with m.If(axil.rvalid):
                    m.d.sync += out_word.eq(axil.rdata)
                    with m.If(axil.rresp.as_value()[1]):
                        record_error()
                        m.d.sync += out_word.eq(0)
                    m.next = "READ_DATA"
            with m.State("READ_DATA"):
                m.d.comb += rx.ready.eq(1)
                send(out_word[:8], "READ_DATA")
                with m.If(tx.ready):
                    m.d.sync += [out_word.eq(out_word >> 8), byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == 3):
                        with m.If(word_index == count - 1):
                            m.next = "RSP_STATUS"
                        with m.Else():
                            m.d.sync += [word_index.eq(word_index + 1),
                                         addr.eq(addr + 4)]
                            m.next = "READ_ADDR"
            with m.State("RSP_STATUS"):
                m.d.comb += rx.ready.eq(1)
                send(status, "RSP_INDEX")
            with m.State("RSP_INDEX"):
                m.d.comb += rx.ready.eq(1)
                send(index, "RSP_CRC_HIGH")
            with m.State("RSP_CRC_HIGH"):
                m.d.comb += rx.ready.eq(1)
                send(crc_tx[8:], "RSP_CRC_LOW", checksum=False)
            with m.State("RSP_CRC_LOW"):
                m.d.comb += rx.ready.eq(1)
                send(crc_tx[:8], "IDLE", checksum=False)
        return m

