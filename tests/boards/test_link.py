"""The host side of the UART link against a software board on a pseudo-terminal.

The software board follows the bridge's rules (:mod:`zeroskip.boards.protocol`)
byte by byte; faults are injected on both directions of the link.
"""

import asyncio
import os
import select
import threading
import time

import pytest

from zeroskip.boards import protocol as p
from zeroskip.boards.link import SerialBus
from zeroskip.core.errors import DeviceError

#: The software board's inter-byte timeout (seconds).
GAP = 0.02
HOLE = 0x0100_0000


class SoftBoard(threading.Thread):
    """A bridge in software on the master side of a pty.

    ``drop_answers``/``corrupt_answers``/``corrupt_commands`` are sets of
    command numbers (counting every frame received, 0 first) to spoil.
    """

    def __init__(self, *, answer=True, magic=p.PING_MAGIC, machine=None):
        super().__init__(daemon=True)
        self.machine = machine
        self.master, self.slave = os.openpty()
        self.port = os.ttyname(self.slave)
        self.answer = answer
        self.magic = magic
        self.memory = {}
        self.applied = []
        self.frames = 0
        self.drop_answers = set()
        self.corrupt_answers = set()
        self.corrupt_commands = set()
        self.last = None
        self.stopping = False

    def stop(self):
        self.stopping = True
        self.join()
        os.close(self.master)
        os.close(self.slave)

    def _bytes(self):
        while not self.stopping:
            ready, _, _ = select.select([self.master], [], [], GAP)
            if not ready:
                yield None
                continue
            for byte in os.read(self.master, 4096):
                yield byte

    def run(self):
        frame = bytearray()
        for byte in self._bytes():
            if byte is None:
                if frame:  # truncated: dropped, NAK once the line is idle
                    frame.clear()
                    self._send(0, p.STATUS_NAK)
                continue
            if not frame and byte != p.SYNC_CMD:
                continue
            frame.append(byte)
            if len(frame) >= 4:
                count = frame[3]
                length = p.COMMAND_HEADER + 2 + (4 * count if frame[1] == p.OP_WRITE else 0)
                if len(frame) == length:
                    self._command(bytes(frame))
                    frame.clear()

    def _command(self, frame):
        number = self.frames
        self.frames += 1
        if number in self.corrupt_commands:
            frame = frame[:5] + bytes([frame[5] ^ 0x10]) + frame[6:]
        if p.crc16(frame[1:]) != 0:
            self._send(0, p.STATUS_NAK, number=number)
            return
        op, seq, count = frame[1], frame[2], frame[3]
        addr = int.from_bytes(frame[4:8], "little")
        words, status, index = [], p.STATUS_OK, 0
        if op == p.OP_PING:
            words = [self.magic << 16 | p.MAX_BURST << 8 | p.PROTOCOL_VERSION]
        elif op == p.OP_READ:
            for i in range(count):
                try:
                    words.append(self._read(addr + 4 * i))
                except ValueError:
                    words.append(0)
                    if status == p.STATUS_OK:
                        status, index = p.STATUS_SLVERR, i
        elif self.last == (seq, op):
            status, index = self.last_answer
            status |= p.STATUS_REPLAYED
        else:
            data = frame[8:-2]
            for i in range(count):
                word = int.from_bytes(data[4 * i:4 * i + 4], "little")
                try:
                    self._write(addr + 4 * i, word)
                except ValueError:
                    status, index = p.STATUS_SLVERR, i
                    break
                self.applied.append((addr + 4 * i, word))
            self.last_answer = (status, index)
        self.last = (seq, op)
        self._send(seq, status, words=words, index=index, number=number)

    def _read(self, addr):
        if self.machine is not None:
            from zeroskip.firmware.model import BusError
            try:
                return self.machine.read_word(addr)
            except BusError:
                raise ValueError(addr) from None
        if addr >= HOLE:
            raise ValueError(addr)
        return self.memory.get(addr, 0)

    def _write(self, addr, word):
        if self.machine is not None:
            from zeroskip.firmware.model import BusError
            try:
                return self.machine.write_word(addr, word)
            except BusError:
                raise ValueError(addr) from None
        if addr >= HOLE:
            raise ValueError(addr)
        self.memory[addr] = word

    def _send(self, seq, status, *, words=(), index=0, number=None):
        if not self.answer or number in self.drop_answers:
            return
        data = p.encode_response(seq, status, words=words, index=index)
        if number in self.corrupt_answers:
            data = data[:3] + bytes([data[3] ^ 1]) + data[4:]
        os.write(self.master, data)


@pytest.fixture
def board():
    board = SoftBoard()
    board.start()
    yield board
    board.stop()


def bus_for(board, **kwargs):
    kwargs.setdefault("timeout", 0.3)
    kwargs.setdefault("retry_delay", 2 * GAP)
    return SerialBus(board.port, **kwargs)


def test_round_trip_and_bursts(board):
    words = list(range(1000, 1000 + 2 * p.MAX_BURST + 5))
    with bus_for(board) as bus:
        asyncio.run(bus.write(0x400, words))
        assert asyncio.run(bus.read(0x400, len(words))) == words
        assert asyncio.run(bus.read(0x404, 1)) == [1001]
    # ping, three write bursts, three read bursts and one more read
    assert board.frames == 8
    assert bus.stats.retries == 0
    assert board.applied == [(0x400 + 4 * i, w) for i, w in enumerate(words)]


def test_lost_acknowledgement_does_not_repeat_a_write(board):
    with bus_for(board) as bus:
        board.drop_answers = {1, 3}
        bus.write_words(0x10, [7, 8])
        bus.write_words(0x10, [9])
    assert board.applied == [(0x10, 7), (0x14, 8), (0x10, 9)]
    assert bus.stats.replays == 2 and bus.stats.timeouts == 2


def test_corrupted_frames_are_retried(board):
    with bus_for(board) as bus:
        board.corrupt_commands = {1}
        board.corrupt_answers = {2, 3}
        bus.write_words(0x20, [1, 2, 3])
        assert bus.read_words(0x20, 3) == [1, 2, 3]
    assert board.applied == [(0x20, 1), (0x24, 2), (0x28, 3)]
    assert bus.stats.naks == 1 and bus.stats.bad_responses == 2


def test_slverr_names_the_address(board):
    with bus_for(board) as bus:
        with pytest.raises(DeviceError, match=r"^the accelerator rejected the write of address "
                                              r"0x1000000 \(SLVERR\)$"):
            bus.write_words(HOLE - 4, [1, 2])
        with pytest.raises(DeviceError, match=r"^the accelerator rejected the read of address "
                                              r"0x1000004 \(SLVERR\)$"):
            bus.read_words(HOLE + 4, 1)


def test_silent_board():
    board = SoftBoard(answer=False)
    board.start()
    try:
        bus = bus_for(board, timeout=0.05, retries=3)
        with pytest.raises(DeviceError) as info:
            asyncio.run(bus.read(0, 1))
        assert str(info.value) == (
            f"no answer from {board.port} after 3 tries (0.05 s each); is the board connected, "
            f"programmed with a zeroskip bitstream and its link set to 1000000 baud?")
    finally:
        board.stop()


def test_not_a_zeroskip_board():
    board = SoftBoard(magic=0x1234)
    board.start()
    try:
        with pytest.raises(DeviceError, match=r"answers, but not as a zeroskip board "
                                              r"\(ping answer 0x12344001\)$"):
            bus_for(board).open()
    finally:
        board.stop()


def test_missing_port():
    bus = SerialBus("/dev/ttyNOPE", retries=2)
    with pytest.raises(DeviceError, match=r"^cannot open /dev/ttyNOPE: No such file or directory$"):
        asyncio.run(bus.read(0, 1))


def test_unreliable_link(board):
    with bus_for(board, retries=2) as bus:
        board.corrupt_answers = {1, 2}
        started = time.monotonic()
        with pytest.raises(DeviceError, match=r"after 2 tries \(2 x bad answer\); the link is "
                                              r"unreliable"):
            bus.read_words(0, 1)
        assert time.monotonic() - started < 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"port": 5}, "Port must be a device path, not 5"),
    ({"baudrate": 0}, "Baud rate must be a positive integer, not 0"),
    ({"timeout": -1}, "Timeout must be a positive number of seconds, not -1"),
    ({"retries": 0}, "Retries must be a positive integer, not 0"),
    ({"retry_delay": -1}, "Retry delay must be a non-negative number of seconds, not -1"),
])
def test_bad_parameters(kwargs, message):
    port = kwargs.pop("port", "/dev/ttyUSB1")
    with pytest.raises(TypeError, match=f"^{message}$"):
        SerialBus(port, **kwargs)


def test_run_on_board_against_the_isa_model():
    import numpy as np
    import scipy.sparse as sp

    from zeroskip import AcceleratorConfig
    from zeroskip.boards.link import run_on_board
    from zeroskip.firmware.compiler import compile_spmv
    from zeroskip.firmware.model import Machine

    config = AcceleratorConfig(pes=2, x_depth=64, nz_depth=128, row_depth=32, imem_depth=8)
    rng = np.random.default_rng(7)
    matrix = sp.random(40, 50, density=0.1, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(-50, 50, n) | 1).astype(np.int64)
    x = rng.integers(-20, 20, 50)
    board = SoftBoard(machine=Machine(config))
    board.drop_answers = {3, 9, 14}  # lost acknowledgements
    board.start()
    try:
        result = run_on_board(compile_spmv(matrix, config), x, port=board.port, timeout=0.2)
    finally:
        board.stop()
    assert result.backend == "board"
    assert np.array_equal(result.y_raw, matrix @ x)
