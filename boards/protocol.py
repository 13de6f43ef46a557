"""The UART link protocol between a host and a board's bridge, defined once.

The gateware (:mod:`zeroskip.boards.bridge`) and the host
(:mod:`zeroskip.boards.link`) both take every constant and the checksum from
this module.

Frames
------
The host sends *command* frames; the board answers each with one *response*
frame. Multi-byte fields are little-endian except the checksum.

Command (host to board)::

    offset  size  field
    0       1     SYNC_CMD (0xA5)
    1       1     op: OP_PING, OP_READ or OP_WRITE
    2       1     seq: sequence number, incremented by the host per new command
    3       1     count: words, 1 to MAX_BURST for OP_READ/OP_WRITE, 0 for OP_PING
    4       4     addr: byte address of the first word
    8       4*n   data: count words (OP_WRITE only)
    8+4n    2     CRC-16 over bytes 1 to 7+4n, high byte first

Response (board to host)::

    offset  size  field
    0       1     SYNC_RSP (0x5A)
    1       1     seq: the command's sequence number
    2       1     count: data words that follow (the read count; 1 for OP_PING;
                  0 for writes and NAK)
    3       4*n   data
    3+4n    1     status: STATUS_OK, STATUS_SLVERR or STATUS_NAK, with
                  STATUS_REPLAYED set when a write is answered from memory
    4+4n    1     index: the first word that answered SLVERR (0 otherwise)
    5+4n    2     CRC-16 over bytes 1 to 4+4n, high byte first

The checksum is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value
0xFFFF, no reflection, no final XOR); running it over a frame including its
checksum bytes leaves 0.

Rules
-----
- Word ``i`` of a burst is at ``addr + 4 * i``. A write is buffered whole
  and applied only after its checksum is verified; it stops at the first word
  answering ``SLVERR``. A read reads every word (a word answering ``SLVERR``
  reads as 0).
- A frame with a bad checksum, an unknown op, a bad count, or that stops for
  longer than the board's inter-byte timeout is discarded without effect; once
  the line has been idle for that timeout the board answers ``STATUS_NAK``.
  Bytes arriving while the board executes or answers a command are dropped.
- The board remembers the sequence number, op and answer of the last command
  it executed. A write carrying the same sequence number as the last executed
  write is not applied again: its answer is replayed with
  ``STATUS_REPLAYED``. So a host whose acknowledgement was lost retransmits
  the same frame and the write still happens exactly once. Reads and pings
  have no side effects and are always executed.
- ``OP_PING`` answers one word, :func:`ping_word`; a host sends it first so
  that the board's remembered sequence number is that of a ping.
"""

__all__ = [
    "SYNC_CMD", "SYNC_RSP", "OP_PING", "OP_READ", "OP_WRITE", "OPS",
    "STATUS_OK", "STATUS_SLVERR", "STATUS_NAK", "STATUS_REPLAYED",
    "MAX_BURST", "PROTOCOL_VERSION", "PING_MAGIC", "DEFAULT_BAUDRATE", "ADDR_WIDTH",
    "COMMAND_HEADER", "RESPONSE_HEADER", "RESPONSE_TRAILER",
    "crc16", "crc16_update", "ping_word",
    "encode_command", "encode_response", "ProtocolError", "parse_response",
]

SYNC_CMD = 0xA5
SYNC_RSP = 0x5A

OP_PING = 0x01
OP_READ = 0x02
OP_WRITE = 0x03
OPS = (OP_PING, OP_READ, OP_WRITE)

STATUS_OK = 0x00
STATUS_SLVERR = 0x01
STATUS_NAK = 0x80
#: Or-ed into the status of a write answered from memory (not applied again).
STATUS_REPLAYED = 0x40

#: Most words one command reads or writes (the board buffers a whole write).
MAX_BURST = 64
PROTOCOL_VERSION = 1
#: High half of the ping answer: ``"ZB"``.
PING_MAGIC = 0x5A42
#: The baud rate board tops are built for unless told otherwise.
DEFAULT_BAUDRATE = 1_000_000
#: Address bits the bridge drives (the accelerator's AXI4-Lite address width).
ADDR_WIDTH = 28

#: Bytes of a command before its data: sync, op, seq, count, addr.
COMMAND_HEADER = 8
#: Bytes of a response before its data: sync, seq, count.
RESPONSE_HEADER = 3
#: Bytes of a response after its data: status, index, CRC.
RESPONSE_TRAILER = 4

CRC_POLY = 0x1021
CRC_INIT = 0xFFFF


def crc16_update(crc, byte):
    """Return the CRC-16/CCITT-FALSE ``crc`` after one more ``byte``."""
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLY if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE of ``data`` (bytes)."""
    for byte in data:
        crc = crc16_update(crc, byte)
    return crc


def ping_word(max_burst=MAX_BURST):
    """The data word a board answers to ``OP_PING``."""
    return PING_MAGIC << 16 | max_burst << 8 | PROTOCOL_VERSION


def _words_bytes(words):
    return b"".join((int(w) & 0xFFFF_FFFF).to_bytes(4, "little") for w in words)


def encode_command(op, seq, addr, *, count=None, words=()):
    """Return the bytes of one command frame.

    Parameters
    ----------
    op : int
        ``OP_PING``, ``OP_READ`` or ``OP_WRITE``.
    seq : int
        Sequence number, 0 to 255.
    addr : int
        Byte address of the first word.
    count : int, optional
        Words to read (``OP_READ``); a write's count is ``len(words)``.
    words : sequence of int
        The words of an ``OP_WRITE``.
    """
    if op == OP_WRITE:
        count = len(words)
    elif op == OP_PING:
        count = 0
    body = bytes([op, seq & 0xFF, count & 0xFF]) + (addr & 0xFFFF_FFFF).to_bytes(4, "little")
    if op == OP_WRITE:
        body += _words_bytes(words)
    return bytes([SYNC_CMD]) + body + crc16(body).to_bytes(2, "big")


def encode_response(seq, status, *, words=(), index=0):
    """Return the bytes of one response frame (what the board sends)."""
    body = bytes([seq & 0xFF, len(words)]) + _words_bytes(words) + bytes([status, index])
    return bytes([SYNC_RSP]) + body + crc16(body).to_bytes(2, "big")


class ProtocolError(Exception):
    """A response frame that cannot be trusted (bad checksum or shape)."""


def parse_response(frame):
    """Check one whole response frame and return ``(seq, status, index, words)``.

    Raises
    ------
    ProtocolError
        If the frame is malformed or its checksum is wrong.
    """
    if len(frame) < RESPONSE_HEADER + RESPONSE_TRAILER or frame[0] != SYNC_RSP:
        raise ProtocolError("malformed response")
    count = frame[2]
    if len(frame) != RESPONSE_HEADER + 4 * count + RESPONSE_TRAILER:
        raise ProtocolError("response length does not match its count")
    if crc16(frame[1:]) != 0:
        raise ProtocolError("bad response checksum")
    data = frame[RESPONSE_HEADER:RESPONSE_HEADER + 4 * count]
    words = [int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(count)]
    status, index = frame[-4], frame[-3]
    return frame[1], status, index, words
