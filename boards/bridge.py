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


class _Timeout(wiring.Component):
    """The inter-byte timeout of :class:`UartAxiBridge`.

    The timer counts ticks of a free-running prescaler, so that no long
    counter sits on the critical path: it expires ``timeout_cycles`` after
    the last restart, rounded up to a whole number of ticks.

    Parameters
    ----------
    timeout_cycles : int
        Positive number of clock cycles (validated by the bridge).

    Attributes
    ----------
    restart : In(1)
        Starts the timeout again (a byte was taken).
    expired : Out(1)
        High from the expiry of the timeout until the next restart.
    """

    def __init__(self, timeout_cycles):
        self._timeout_cycles = timeout_cycles
        super().__init__({"restart": In(1), "expired": Out(1)})

    def elaborate(self, platform):
        m = Module()
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
        m.d.comb += self.expired.eq(timer == 0)
        with m.If(self.restart):
            m.d.sync += timer.eq(ticks)
        with m.Elif(tick & ~self.expired):
            m.d.sync += timer.eq(timer - 1)
        return m


class _Command:
    """The registers of the command being received, then executed.

    ``byte_index`` and ``word_index`` count the bytes and words of the
    command's data, then those of the transfer and of the answer.
    ``crc_next`` is the checksum after the byte on ``byte``: one network,
    shared by every state that takes a byte.
    """

    def __init__(self, byte):
        self.op = Signal(8)
        self.seq = Signal(8)
        self.count = Signal(8)
        self.addr = Signal(32)
        self.crc = Signal(16)
        self.header_index = Signal(range(8))
        self.byte_index = Signal(2)
        self.word_index = Signal(range(p.MAX_BURST))
        self.word = Signal(32)
        self.crc_next = crc16_step(self.crc, byte)


class _Answer:
    """The registers of the answer: its header, data and trailer fields.

    ``out_word`` is the data word being sent; ``error_seen`` that a word has
    failed (``index`` names the first). ``crc`` is the checksum of the bytes
    sent so far; it takes each byte sent while ``checksum`` is high.
    """

    def __init__(self):
        self.status = Signal(8)
        self.index = Signal(8)
        self.error_seen = Signal()
        self.out_word = Signal(32)
        self.count = Signal(8, name="rsp_count")
        self.read = Signal(name="rsp_read")
        self.ping = Signal(name="rsp_ping")
        self.crc = Signal(16, init=p.CRC_INIT, name="crc_tx")
        self.checksum = Signal(name="tx_checksum")


class _Last:
    """The last executed command: its sequence number, whether it was a
    write, and its answer's status and index (for a replay)."""

    def __init__(self):
        self.valid = Signal(name="last_valid")
        self.seq = Signal(8, name="last_seq")
        self.write = Signal(name="last_write")
        self.status = Signal(8, name="last_status")
        self.index = Signal(8, name="last_index")


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
        m.submodules.buffer = buffer = memory.Memory(shape=32, depth=p.MAX_BURST, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port()
        m.submodules.timeout = timeout = _Timeout(self._timeout_cycles)
        m.d.comb += timeout.restart.eq(self.rx.valid & self.rx.ready)

        cmd = _Command(self.rx.payload)
        answer = _Answer()
        last = _Last()
        out_of_range = self._datapath(m, cmd, wr=wr, rd=rd)
        with m.If(self.tx.valid & self.tx.ready & answer.checksum):
            m.d.sync += answer.crc.eq(crc16_step(answer.crc, self.tx.payload))
        op_ok, count_ok = self._header_checks(m, cmd)

        with m.FSM() as fsm:
            m.d.comb += self.active.eq(~fsm.ongoing("IDLE"))
            self._receive(m, cmd, answer, op_ok=op_ok, count_ok=count_ok, wr=wr,
                          expired=timeout.expired)
            self._execute(m, cmd, answer, last)
            self._write(m, cmd, answer, last, out_of_range=out_of_range)
            self._answer_header(m, cmd, answer)
            self._read(m, cmd, answer, out_of_range=out_of_range)
            self._answer_trailer(m, answer)
        return m

    def _datapath(self, m, cmd, *, wr, rd):
        """Wire the buffer and the AXI4-Lite addresses and data to ``cmd``.

        The buffer is addressed by ``cmd.word_index``; it takes the word being
        received and gives the word being written. ``cmd.addr`` walks the
        burst; returns the condition that it is at or above
        ``2 ** addr_width``, where words are not accessed.
        """
        axil, width = self.axil, self._addr_width
        m.d.comb += [
            rd.addr.eq(cmd.word_index),
            wr.addr.eq(cmd.word_index),
            wr.data.eq(Cat(cmd.word[8:], self.rx.payload)),
            axil.awaddr.eq(cmd.addr[:width]),
            axil.araddr.eq(cmd.addr[:width]),
            axil.wdata.eq(rd.data),
            axil.wstrb.eq(0b1111),
        ]
        return cmd.addr[width:] != 0

    def _header_checks(self, m, cmd):
        """Return whether ``cmd.op`` is known and ``cmd.count`` is valid for it.

        A ping carries no words; a read or a write from 1 to ``MAX_BURST``.
        """
        op = cmd.op
        op_ok = (op == p.OP_PING) | (op == p.OP_READ) | (op == p.OP_WRITE)
        count_ok = Signal()
        with m.If(op == p.OP_PING):
            m.d.comb += count_ok.eq(cmd.count == 0)
        with m.Else():
            m.d.comb += count_ok.eq((cmd.count != 0) & (cmd.count <= p.MAX_BURST))
        return op_ok, count_ok

    def _send(self, m, answer, value, next_state, *, checksum=True):
        """Offer the byte ``value`` on ``tx``; go to ``next_state`` once taken.

        With ``checksum``, the byte enters ``answer.crc``.
        """
        m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(value),
                     answer.checksum.eq(checksum)]
        with m.If(self.tx.ready):
            m.next = next_state

    def _record_error(self, m, cmd, answer):
        """Answer ``STATUS_SLVERR`` at ``cmd.word_index`` unless a word failed before."""
        with m.If(~answer.error_seen):
            m.d.sync += [answer.status.eq(p.STATUS_SLVERR), answer.index.eq(cmd.word_index),
                         answer.error_seen.eq(1)]

    def _start_nak(self, m, answer):
        """Drop the frame: pulse ``nak`` and answer ``STATUS_NAK`` without data."""
        m.d.comb += self.nak.eq(1)
        m.d.sync += [answer.status.eq(p.STATUS_NAK), answer.index.eq(0), answer.count.eq(0),
                     answer.read.eq(0), answer.ping.eq(0)]
        m.next = "RSP_SYNC"

    def _receive(self, m, cmd, answer, *, op_ok, count_ok, wr, expired):
        """States ``IDLE`` to ``DISCARD``: take a command frame and check it.

        A frame with a good header and checksum goes on to ``EXECUTE``, its
        data in the buffer (through ``wr``). A bad header or checksum leads to
        ``DISCARD``, which drops bytes until the line has been idle for the
        timeout; a timeout there or within a frame (``expired``) starts a NAK.
        """
        rx, byte = self.rx, self.rx.payload
        with m.State("IDLE"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid & (byte == p.SYNC_CMD)):
                m.d.sync += [cmd.crc.eq(p.CRC_INIT), cmd.header_index.eq(0), cmd.seq.eq(0)]
                m.next = "HEADER"
        with m.State("HEADER"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                m.d.sync += [cmd.crc.eq(cmd.crc_next), cmd.header_index.eq(cmd.header_index + 1)]
                with m.Switch(cmd.header_index):
                    with m.Case(0):
                        m.d.sync += cmd.op.eq(byte)
                    with m.Case(1):
                        m.d.sync += cmd.seq.eq(byte)
                    with m.Case(2):
                        m.d.sync += cmd.count.eq(byte)
                    with m.Default():
                        m.d.sync += cmd.addr.eq(Cat(cmd.addr[8:], byte))
                with m.If(cmd.header_index == 6):
                    m.d.sync += [cmd.word_index.eq(0), cmd.byte_index.eq(0)]
                    with m.If(~op_ok | ~count_ok):
                        m.next = "DISCARD"
                    with m.Elif(cmd.op == p.OP_WRITE):
                        m.next = "DATA"
                    with m.Else():
                        m.next = "CRC_HIGH"
            with m.Elif(expired):
                self._start_nak(m, answer)
        with m.State("DATA"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                m.d.sync += [cmd.crc.eq(cmd.crc_next), cmd.word.eq(Cat(cmd.word[8:], byte)),
                             cmd.byte_index.eq(cmd.byte_index + 1)]
                with m.If(cmd.byte_index == 3):
                    m.d.comb += wr.en.eq(1)
                    m.d.sync += cmd.word_index.eq(cmd.word_index + 1)
                    with m.If(cmd.word_index == cmd.count - 1):
                        m.next = "CRC_HIGH"
            with m.Elif(expired):
                self._start_nak(m, answer)
        with m.State("CRC_HIGH"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                m.d.sync += cmd.crc.eq(cmd.crc_next)
                m.next = "CRC_LOW"
            with m.Elif(expired):
                self._start_nak(m, answer)
        with m.State("CRC_LOW"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                with m.If(cmd.crc_next == 0):
                    m.next = "EXECUTE"
                with m.Else():
                    m.next = "DISCARD"
            with m.Elif(expired):
                self._start_nak(m, answer)
        with m.State("DISCARD"):
            m.d.comb += rx.ready.eq(1)
            with m.If(~rx.valid & expired):
                self._start_nak(m, answer)

    def _execute(self, m, cmd, answer, last):
        """State ``EXECUTE``: start the answer, and acknowledge or replay.

        A read or a ping becomes the last command and is answered at once. A
        write goes on to ``WRITE_FETCH``, unless it repeats the sequence
        number of the last command, a write: then it is answered again from
        ``last`` with ``STATUS_REPLAYED`` and ``replay`` pulses.
        """
        with m.State("EXECUTE"):
            m.d.comb += self.rx.ready.eq(1)
            m.d.sync += [cmd.word_index.eq(0), answer.error_seen.eq(0),
                         answer.status.eq(p.STATUS_OK), answer.index.eq(0),
                         answer.read.eq(cmd.op == p.OP_READ),
                         answer.ping.eq(cmd.op == p.OP_PING),
                         answer.count.eq(0)]
            duplicate = last.valid & last.write & (last.seq == cmd.seq)
            with m.If(cmd.op == p.OP_WRITE):
                with m.If(duplicate):
                    m.d.comb += self.replay.eq(1)
                    m.d.sync += [answer.status.eq(last.status | p.STATUS_REPLAYED),
                                 answer.index.eq(last.index)]
                    m.next = "RSP_SYNC"
                with m.Else():
                    m.next = "WRITE_FETCH"
            with m.Else():
                m.d.sync += [last.valid.eq(1), last.seq.eq(cmd.seq), last.write.eq(0)]
                m.d.sync += answer.count.eq(Mux(cmd.op == p.OP_READ, cmd.count, 1))
                m.next = "RSP_SYNC"

    def _write(self, m, cmd, answer, last, *, out_of_range):
        """States ``WRITE_FETCH`` to ``WRITE_DONE``: write the buffered words.

        One AXI4-Lite write per word, from ``cmd.addr`` up; the first word
        that is ``out_of_range`` or answers an error ends the burst. The write
        becomes the last command, with its answer's status and index.
        """
        rx, axil = self.rx, self.axil
        aw_done = Signal()
        w_done = Signal()
        with m.State("WRITE_FETCH"):
            # The buffer's read port answers one cycle after its address.
            m.d.comb += rx.ready.eq(1)
            m.d.sync += [aw_done.eq(0), w_done.eq(0)]
            with m.If(out_of_range):
                self._record_error(m, cmd, answer)
                m.next = "WRITE_DONE"
            with m.Else():
                m.next = "WRITE_ADDR"
        with m.State("WRITE_ADDR"):
            m.d.comb += [rx.ready.eq(1), axil.awvalid.eq(~aw_done), axil.wvalid.eq(~w_done)]
            aw_now = aw_done | axil.awready
            w_now = w_done | axil.wready
            m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
            with m.If(aw_now & w_now):
                m.next = "WRITE_RESP"
        with m.State("WRITE_RESP"):
            m.d.comb += [rx.ready.eq(1), axil.bready.eq(1)]
            with m.If(axil.bvalid):
                with m.If(axil.bresp.as_value()[1]):
                    self._record_error(m, cmd, answer)
                    m.next = "WRITE_DONE"
                with m.Elif(cmd.word_index == cmd.count - 1):
                    m.next = "WRITE_DONE"
                with m.Else():
                    m.d.sync += [cmd.word_index.eq(cmd.word_index + 1), cmd.addr.eq(cmd.addr + 4)]
                    m.next = "WRITE_FETCH"
        with m.State("WRITE_DONE"):
            m.d.comb += rx.ready.eq(1)
            m.d.sync += [last.valid.eq(1), last.seq.eq(cmd.seq), last.write.eq(1),
                         last.status.eq(answer.status), last.index.eq(answer.index)]
            m.next = "RSP_SYNC"

    def _answer_header(self, m, cmd, answer):
        """States ``RSP_SYNC`` to ``PING_DATA``: send the answer's header.

        The sync byte, the sequence number and the count; then a read goes on
        to ``READ_ADDR``, a ping sends its word (``protocol.ping_word``) and
        anything else goes on to the trailer.
        """
        rx = self.rx
        with m.State("RSP_SYNC"):
            m.d.comb += rx.ready.eq(1)
            m.d.sync += [cmd.word_index.eq(0), answer.crc.eq(p.CRC_INIT)]
            self._send(m, answer, p.SYNC_RSP, "RSP_SEQ", checksum=False)
        with m.State("RSP_SEQ"):
            m.d.comb += rx.ready.eq(1)
            self._send(m, answer, cmd.seq, "RSP_COUNT")
        with m.State("RSP_COUNT"):
            m.d.comb += rx.ready.eq(1)
            m.d.sync += [cmd.byte_index.eq(0), answer.out_word.eq(p.ping_word(p.MAX_BURST))]
            with m.If(answer.read):
                self._send(m, answer, answer.count, "READ_ADDR")
            with m.Elif(answer.ping):
                self._send(m, answer, answer.count, "PING_DATA")
            with m.Else():
                self._send(m, answer, answer.count, "RSP_STATUS")
        with m.State("PING_DATA"):
            m.d.comb += rx.ready.eq(1)
            self._send(m, answer, answer.out_word[:8], "PING_DATA")
            with m.If(self.tx.ready):
                m.d.sync += [answer.out_word.eq(answer.out_word >> 8),
                             cmd.byte_index.eq(cmd.byte_index + 1)]
                with m.If(cmd.byte_index == 3):
                    m.next = "RSP_STATUS"

    def _read(self, m, cmd, answer, *, out_of_range):
        """States ``READ_ADDR`` to ``READ_DATA``: read the words and send them.

        One AXI4-Lite read per word, from ``cmd.addr`` up, each sent as it
        arrives; a word that is ``out_of_range`` or answers an error is sent
        as zero and recorded in the answer.
        """
        rx, axil = self.rx, self.axil
        with m.State("READ_ADDR"):
            m.d.comb += rx.ready.eq(1)
            m.d.sync += cmd.byte_index.eq(0)
            with m.If(out_of_range):
                self._record_error(m, cmd, answer)
                m.d.sync += answer.out_word.eq(0)
                m.next = "READ_DATA"
            with m.Else():
                m.d.comb += axil.arvalid.eq(1)
                with m.If(axil.arready):
                    m.next = "READ_WAIT"
        with m.State("READ_WAIT"):
            m.d.comb += [rx.ready.eq(1), axil.rready.eq(1)]
            with m.If(axil.rvalid):
                m.d.sync += answer.out_word.eq(axil.rdata)
                with m.If(axil.rresp.as_value()[1]):
                    self._record_error(m, cmd, answer)
                    m.d.sync += answer.out_word.eq(0)
                m.next = "READ_DATA"
        with m.State("READ_DATA"):
            m.d.comb += rx.ready.eq(1)
            self._send(m, answer, answer.out_word[:8], "READ_DATA")
            with m.If(self.tx.ready):
                m.d.sync += [answer.out_word.eq(answer.out_word >> 8),
                             cmd.byte_index.eq(cmd.byte_index + 1)]
                with m.If(cmd.byte_index == 3):
                    with m.If(cmd.word_index == cmd.count - 1):
                        m.next = "RSP_STATUS"
                    with m.Else():
                        m.d.sync += [cmd.word_index.eq(cmd.word_index + 1),
                                     cmd.addr.eq(cmd.addr + 4)]
                        m.next = "READ_ADDR"

    def _answer_trailer(self, m, answer):
        """States ``RSP_STATUS`` to ``RSP_CRC_LOW``: send status, index and checksum.

        The checksum covers every byte of the answer after its sync byte;
        the last byte returns to ``IDLE``.
        """
        rx = self.rx
        with m.State("RSP_STATUS"):
            m.d.comb += rx.ready.eq(1)
            self._send(m, answer, answer.status, "RSP_INDEX")
        with m.State("RSP_INDEX"):
            m.d.comb += rx.ready.eq(1)
            self._send(m, answer, answer.index, "RSP_CRC_HIGH")
        with m.State("RSP_CRC_HIGH"):
            m.d.comb += rx.ready.eq(1)
            self._send(m, answer, answer.crc[8:], "RSP_CRC_LOW", checksum=False)
        with m.State("RSP_CRC_LOW"):
            m.d.comb += rx.ready.eq(1)
            self._send(m, answer, answer.crc[:8], "IDLE", checksum=False)
