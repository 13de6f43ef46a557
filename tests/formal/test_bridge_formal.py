"""The UART-to-AXI4-Lite bridge, proved at its byte streams and its AXI4-Lite
port: a bounded model check from reset of ``DEPTH`` cycles (yices).

The bridge's byte-level input ``rx`` (what the UART receiver delivers) is
driven by an assumed host, its AXI4-Lite port by an assumed slave:

- the host offers a byte only while the bridge is idle (``active`` low) or
  during a frame it is sending. A frame starts with ``SYNC_CMD``; its length
  is that of a command with its op and count (a write of 1 to ``MAX_BURST``
  words carries their data, anything else is 10 bytes); its bytes follow
  each other with fewer than ``TIMEOUT`` idle cycles between two; from its
  last byte the host is silent until the bridge is idle again;
- the bytes are restricted so that the checksum's parity equations stay
  small for the solver (:func:`restrict_byte`): the op is one of the three
  ops or 0, every other byte before the checksum 0 or 1, each checksum byte
  the right one or the right one with one bit flipped (CRC-16 detects every
  such error, so frames with good and with bad checksums are both reached);
- the slave answers B only for a write whose address and data it took and R
  only for a read address it took, holding ``valid`` and the payload until
  ``ready``; ``awready``, ``wready``, ``arready``, ``bresp``, ``rdata``,
  ``rresp`` and ``tx.ready`` are free.

A shadow of the host parses each frame as ``zeroskip.boards.protocol``
defines it, with its own bit-serial CRC-16. Proved:

- (a) no frame reaches the bus (``awvalid``, ``wvalid``, ``arvalid``) before
  its last byte, a frame with a wrong checksum or a bad header never, and a
  read or a ping never writes; no answer byte before a frame's last byte;
  a bad frame's answer has count 0 and status ``STATUS_NAK``, a good one the
  frame's sequence number;
- (c) the AW, W and AR channels and ``tx`` follow the handshake rules
  (``valid`` low in reset, held with a stable payload until ``ready``), one
  request outstanding at a time, ``wstrb`` whole.

Depth 18 covers every frame of up to 14 bytes (a one-word write) up to its
first bus request, and a bad 10-byte frame up to the status of its NAK.
The exactly-once rule for retransmitted writes needs two writes and an
answer, about 45 cycles, which is beyond a few minutes of solver time; it is
checked by simulation in ``tests/boards/test_bridge.py``.
"""

from types import SimpleNamespace

from amaranth.hdl import Assert, Assume, Cat, Mux, Signal

from zeroskip.boards import protocol as p
from zeroskip.boards.bridge import UartAxiBridge
from zeroskip.sim.formal import mutant, stream_rules

#: One cycle: the bytes of a frame come back to back (fewer than TIMEOUT idle
#: cycles between two), and a dropped frame is answered soon.
TIMEOUT = 1
#: Small, so that bursts running out of the address space are reached.
ADDR_WIDTH = 3
DEPTH = 18
SOLVER = "yices"
#: The longest command frame after its sync byte.
FRAME_BYTES = p.COMMAND_HEADER + 4 * p.MAX_BURST + 2


def crc_step(crc, byte):
    """CRC-16/CCITT-FALSE after one byte, bit-serial (independent of the
    bridge's XOR network)."""
    crc = crc ^ (byte << 8)
    for _ in range(8):
        crc = Mux(crc[15], (crc << 1) ^ p.CRC_POLY, crc << 1)[:16]
    return crc


def channel(valid, ready, *payload):
    return SimpleNamespace(valid=valid, ready=ready, payload=Cat(*payload))


class Frame:
    """The host's shadow of the command frame it is sending or has sent."""

    def __init__(self):
        self.sending = Signal(name="host_sending")
        self.waiting = Signal(name="host_waiting")   # sent; the bridge handles it
        self.pos = Signal(range(FRAME_BYTES + 1), name="frame_pos")
        self.gap = Signal(range(TIMEOUT + 1), name="frame_gap")
        self.op = Signal(8, name="frame_op")
        self.seq = Signal(8, name="frame_seq")
        self.count = Signal(8, name="frame_count")
        self.crc = Signal(16, name="frame_crc")
        self.crc_low = Signal(8, name="frame_crc_low")
        self.good = Signal(name="frame_good")

    def header_ok(self):
        op, count = self.op, self.count
        return (((op == p.OP_PING) & (count == 0)) |
                (((op == p.OP_READ) | (op == p.OP_WRITE)) & (count != 0) &
                 (count <= p.MAX_BURST)))

    def is_write(self):
        return self.header_ok() & (self.op == p.OP_WRITE)


def host(m, dut, frame):
    """The host's assumptions and the shadow parse of its frames."""
    rx = dut.rx
    byte = rx.payload
    taken = rx.valid & rx.ready
    stream_rules(m, rx, Assume, name="rx")
    with m.If(~frame.sending & ~frame.waiting):
        m.d.comb += Assume(~rx.valid | ~dut.active)
        with m.If(taken & (byte == p.SYNC_CMD)):
            m.d.sync += [frame.sending.eq(1), frame.pos.eq(1), frame.gap.eq(0),
                         frame.crc.eq(p.CRC_INIT)]
    with m.If(frame.waiting):
        m.d.comb += Assume(~rx.valid)
        with m.If(~dut.active):
            m.d.sync += frame.waiting.eq(0)
    with m.If(frame.sending):
        m.d.comb += Assume(frame.gap < TIMEOUT)
        with m.If(~taken):
            m.d.sync += frame.gap.eq(frame.gap + 1)
        with m.Else():
            parse_byte(m, frame, byte)


def parse_byte(m, frame, byte):
    """One byte of the frame being sent, at ``frame.pos``."""
    crc = crc_step(frame.crc, byte)
    m.d.sync += [frame.gap.eq(0), frame.pos.eq(frame.pos + 1), frame.crc.eq(crc)]
    with m.Switch(frame.pos):
        with m.Case(1):
            m.d.sync += frame.op.eq(byte)
        with m.Case(2):
            m.d.sync += frame.seq.eq(byte)
        with m.Case(3):
            m.d.sync += frame.count.eq(byte)
    length = Mux(frame.is_write(), 10 + 4 * frame.count, 10)
    restrict_byte(m, frame, byte, length)
    with m.If(frame.pos == length - 1):
        m.d.sync += [frame.sending.eq(0), frame.waiting.eq(1),
                     frame.good.eq(frame.header_ok() & (crc == 0))]


def restrict_byte(m, frame, byte, length):
    """The bytes a host sends, restricted so that the checksum's parity
    equations stay small for the solver: the op any of the three ops or 0,
    every other byte before the checksum 0 or 1; each checksum byte the right
    one or the right one with one bit flipped."""
    with m.If(frame.pos == 1):
        m.d.comb += Assume(byte < 4)
    with m.Elif(frame.pos < length - 2):
        m.d.comb += Assume(byte < 2)
    expected = Signal(8, name="frame_crc_expected")
    with m.If(frame.pos == length - 2):
        m.d.comb += expected.eq(frame.crc[8:])
        m.d.sync += frame.crc_low.eq(frame.crc[:8])
    with m.Else():
        m.d.comb += expected.eq(frame.crc_low)
    flip = byte ^ expected
    with m.If(frame.pos >= length - 2):
        m.d.comb += Assume((flip & (flip - 1)) == 0)


def slave(m, dut):
    """The AXI4-Lite slave's assumptions; the handshake rules of the bridge's
    channels (c). Returns the AW, W and AR channels."""
    a = dut.axil
    aw = channel(a.awvalid, a.awready, a.awaddr)
    w = channel(a.wvalid, a.wready, a.wdata, a.wstrb)
    ar = channel(a.arvalid, a.arready, a.araddr)
    b = channel(a.bvalid, a.bready, a.bresp)
    r = channel(a.rvalid, a.rready, a.rdata, a.rresp)
    for name, ch in (("aw", aw), ("w", w), ("ar", ar)):
        stream_rules(m, ch, Assert, name=name)
    for name, ch in (("b", b), ("r", r)):
        stream_rules(m, ch, Assume, name=name)
    aw_out, w_out, ar_out = Signal(), Signal(), Signal()
    with m.If(fire(aw)):
        m.d.sync += aw_out.eq(1)
    with m.If(fire(w)):
        m.d.sync += w_out.eq(1)
    with m.If(fire(b)):
        m.d.sync += [aw_out.eq(0), w_out.eq(0)]
    with m.If(fire(ar)):
        m.d.sync += ar_out.eq(1)
    with m.If(fire(r)):
        m.d.sync += ar_out.eq(0)
    m.d.comb += [
        Assume(~a.bvalid | (aw_out & w_out)),
        Assume(~a.rvalid | ar_out),
        Assert(~(aw.valid & aw_out) & ~(w.valid & w_out) & ~(ar.valid & ar_out)
               & ~((aw.valid | w.valid) & ar_out) & ~(ar.valid & (aw_out | w_out)),
               "a second request before the response"),
        Assert(~w.valid | (a.wstrb == 0b1111), "a partial write strobe"),
    ]
    return aw, w, ar, b


def fire(ch):
    return ch.valid & ch.ready


def handling(m, dut, frame):
    """(a) on the bus: no frame before its last byte, no bad frame at all."""
    a = dut.axil
    bus = a.awvalid | a.wvalid | a.arvalid
    m.d.comb += Assert(~frame.sending | ~bus, "the bus used before a frame's last byte")
    with m.If(frame.waiting):
        m.d.comb += [
            Assert(frame.good | ~bus, "a bad frame reached the bus"),
            Assert(frame.is_write() | ~(a.awvalid | a.wvalid), "a read or ping wrote"),
        ]


def answer(m, dut, frame):
    """The answer: only to a sent frame; a bad frame's is a NAK without data."""
    tx = dut.tx
    stream_rules(m, tx, Assert, name="tx")
    pos = Signal(range(8 + 4 * 256), name="answer_pos")
    count = Signal(8, name="answer_count")
    m.d.comb += Assert(frame.waiting | ~tx.valid, "an answer before a frame's last byte")
    with m.If(~frame.waiting):
        m.d.sync += pos.eq(0)
    with m.If(frame.waiting & tx.valid & tx.ready):
        m.d.sync += pos.eq(pos + 1)
        byte = tx.payload
        with m.If(pos == 0):
            m.d.comb += Assert(byte == p.SYNC_RSP, "an answer without its sync byte")
        with m.If((pos == 1) & frame.good):
            m.d.comb += Assert(byte == frame.seq, "an answer with another seq")
        with m.If(pos == 2):
            m.d.sync += count.eq(byte)
            m.d.comb += Assert(frame.good | (byte == 0), "a NAK with data")
        with m.If((pos > 2) & (pos == 3 + 4 * count) & ~frame.good):
            m.d.comb += Assert(byte == p.STATUS_NAK, "a bad frame not answered NAK")


def bridge_properties(m, dut):
    frame = Frame()
    host(m, dut, frame)
    slave(m, dut)
    handling(m, dut, frame)
    answer(m, dut, frame)


def bridge():
    return UartAxiBridge(timeout_cycles=TIMEOUT, addr_width=ADDR_WIDTH)


def test_bridge_bmc(run_proof):
    run_proof(bridge(), bridge_properties, name="bridge", mode="bmc", depth=DEPTH,
              solver=SOLVER)


def test_bridge_mutant_writes_unchecked(refute):
    # (a): a write is executed whatever its checksum.
    Mutant = mutant(UartAxiBridge, "with m.If(cmd.crc_next == 0):",
                    "with m.If((cmd.crc_next == 0) | (cmd.op == p.OP_WRITE)):",
                    method="_receive")
    refute(Mutant(timeout_cycles=TIMEOUT, addr_width=ADDR_WIDTH), bridge_properties,
           expect="a bad frame reached the bus", name="bridge_mutant_crc", mode="bmc", depth=DEPTH,
           solver=SOLVER)


def test_bridge_mutant_nak_as_ok(refute):
    # (a): a dropped frame answered with STATUS_OK.
    Mutant = mutant(UartAxiBridge, "answer.status.eq(p.STATUS_NAK)",
                    "answer.status.eq(p.STATUS_OK)", method="_start_nak")
    refute(Mutant(timeout_cycles=TIMEOUT, addr_width=ADDR_WIDTH), bridge_properties,
           expect="a bad frame not answered NAK", name="bridge_mutant_nak", mode="bmc",
           depth=DEPTH, solver=SOLVER)


def test_bridge_mutant_moves_araddr(refute):
    # (c): the read address moves on while the slave has not taken it.
    Mutant = mutant(UartAxiBridge, "m.d.sync += cmd.byte_index.eq(0)",
                    "m.d.sync += [cmd.byte_index.eq(0), cmd.addr.eq(cmd.addr + 4)]",
                    method="_read")
    refute(Mutant(timeout_cycles=TIMEOUT, addr_width=ADDR_WIDTH), bridge_properties,
           expect="ar: payload changed before ready", name="bridge_mutant_ar", mode="bmc",
           depth=DEPTH, solver=SOLVER)
