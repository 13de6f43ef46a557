"""Property tests of the host link: random byte faults never apply a write twice or lose one.

The host (:class:`~zeroskip.boards.link.SerialBus`) talks to a software board
that follows the bridge's rules (:mod:`zeroskip.boards.protocol`) through a
loopback line. Hypothesis draws a sequence of writes and reads and a set of
faults, each spoiling one transmission in either direction: a flipped bit, a
dropped, duplicated or delayed byte, a frame cut short, a frame lost, an
answer delivered late (after the host has sent its next frame). Time is
simulated, so a timeout costs nothing.
"""

import contextlib
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zeroskip.boards import link
from zeroskip.boards import protocol as p
from zeroskip.boards.link import SerialBus
from zeroskip.core.errors import DeviceError

#: Word addresses the operations use (a small space, so reads see earlier writes).
WORDS = 24


class Clock:
    """Simulated ``time`` for the link: sleeping and waiting only move it forward."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Board:
    """The bridge's rules in software, fed whole bursts of bytes.

    After each burst the line goes idle: a frame left incomplete is dropped
    and answered with NAK; bytes after a complete frame (which arrive while
    the board executes and answers it) are dropped.
    """

    def __init__(self):
        self.memory = {}
        self.applied = []
        self.last = None
        self.last_answer = (p.STATUS_OK, 0)

    def receive(self, data):
        """Process one burst; return the answer bytes (possibly none)."""
        start = data.find(bytes([p.SYNC_CMD]))
        if start < 0:
            return b""
        frame = data[start:]
        if len(frame) < p.COMMAND_HEADER:
            return p.encode_response(0, p.STATUS_NAK)
        op, count = frame[1], frame[3]
        length = p.COMMAND_HEADER + 2 + (4 * count if op == p.OP_WRITE else 0)
        if len(frame) < length:
            return p.encode_response(0, p.STATUS_NAK)   # idle in mid-frame
        return self.execute(frame[:length])

    def execute(self, frame):
        op, seq, count = frame[1], frame[2], frame[3]
        if p.crc16(frame[1:]) != 0 or op not in p.OPS or (
                op != p.OP_PING and not 1 <= count <= p.MAX_BURST):
            return p.encode_response(0, p.STATUS_NAK)
        addr = int.from_bytes(frame[4:8], "little")
        words, status = [], p.STATUS_OK
        if op == p.OP_PING:
            words = [p.ping_word()]
        elif op == p.OP_READ:
            words = [self.memory.get(addr + 4 * i, 0) for i in range(count)]
        elif self.last == (seq, op):
            status = self.last_answer[0] | p.STATUS_REPLAYED
        else:
            data = frame[8:-2]
            for i in range(count):
                word = int.from_bytes(data[4 * i:4 * i + 4], "little")
                self.memory[addr + 4 * i] = word
                self.applied.append((addr + 4 * i, word))
            self.last_answer = (status, 0)
        self.last = (seq, op)
        return p.encode_response(seq, status, words=words)


def spoil(data, fault):
    """``data`` after one fault."""
    kind, where, bit = fault
    if not data:
        return data
    i = where % len(data)
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1:]
    if kind == "drop":
        return data[:i] + data[i + 1:]
    if kind == "duplicate":
        return data[:i + 1] + data[i:]
    if kind == "truncate":
        return data[:i]
    if kind == "lose":
        return b""
    raise AssertionError(kind)


class Line:
    """A loopback serial port between the host and a :class:`Board`, with faults.

    ``faults`` maps ``("command" | "answer", n)`` (the n-th transmission in
    that direction, from 0) to a fault; ``("answer", n)`` may also be
    ``("late", ...)``: the answer arrives after the host's next frame.
    """

    def __init__(self, board, clock, faults):
        self.board = board
        self.clock = clock
        self.faults = faults
        self.sent = {"command": 0, "answer": 0}
        self.inbox = bytearray()
        self.late = b""
        self.timeout = None

    def _fault(self, direction):
        number = self.sent[direction]
        self.sent[direction] += 1
        return self.faults.get((direction, number))

    def write(self, data):
        late, self.late = self.late, b""
        self.inbox += late
        fault = self._fault("command")
        if fault is not None:
            data = spoil(data, fault)
        answer = self.board.receive(bytes(data))
        if not answer:
            return
        fault = self._fault("answer")
        if fault is not None and fault[0] == "late":
            self.late = answer
        else:
            self.inbox += spoil(answer, fault) if fault is not None else answer

    def flush(self):
        pass

    def read(self, size):
        if not self.inbox:
            self.clock.sleep(self.timeout)   # nothing arrives before the timeout
            return b""
        data = bytes(self.inbox[:size])
        del self.inbox[:size]
        return data

    def reset_input_buffer(self):
        self.inbox.clear()

    def close(self):
        pass


@contextlib.contextmanager
def connected(faults, *, seq, retries):
    clock = Clock()
    board = Board()
    bus = SerialBus("loopback", timeout=0.5, retries=retries, retry_delay=0.05)
    bus._serial = Line(board, clock, faults)
    bus._seq = seq
    with mock.patch.object(link, "time", clock):
        yield bus, board


FAULT = st.one_of(
    st.tuples(st.sampled_from(["flip"]), st.integers(0, 300), st.integers(0, 7)),
    st.tuples(st.sampled_from(["drop", "duplicate", "truncate", "lose"]), st.integers(0, 300),
              st.just(0)),
)
ANSWER_FAULT = st.one_of(FAULT, st.just(("late", 0, 0)))
FAULTS = st.dictionaries(
    st.one_of(st.tuples(st.just("command"), st.integers(0, 40)),
              st.tuples(st.just("answer"), st.integers(0, 40))),
    FAULT, max_size=6).flatmap(lambda faults: st.fixed_dictionaries({
        key: ANSWER_FAULT if key[0] == "answer" else st.just(value)
        for key, value in faults.items()}))
OPERATION = st.one_of(
    st.tuples(st.just("write"), st.integers(0, WORDS - 1),
              st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=p.MAX_BURST + 3)),
    st.tuples(st.just("read"), st.integers(0, WORDS - 1), st.integers(1, p.MAX_BURST + 3)),
)
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(operations=st.lists(OPERATION, min_size=1, max_size=8), faults=FAULTS,
       seq=st.integers(0, 255))
def test_every_write_applied_once_and_every_read_right(operations, faults, seq):
    # Each fault spoils at most one try, so with more tries than faults every
    # command gets through.
    with connected(faults, seq=seq, retries=len(faults) + 1) as (bus, board):
        assert bus.ping() == p.ping_word()
        expected, memory = [], {}
        for kind, word, arg in operations:
            addr = 4 * word
            if kind == "write":
                bus.write_words(addr, arg)
                for i, value in enumerate(arg):
                    expected.append((addr + 4 * i, value))
                    memory[addr + 4 * i] = value
            else:
                assert bus.read_words(addr, arg) == [memory.get(addr + 4 * i, 0)
                                                     for i in range(arg)]
    assert board.applied == expected
    assert bus.stats.retries <= len(faults)


@PROPERTY
@given(operations=st.lists(OPERATION, min_size=1, max_size=6), faults=FAULTS,
       seq=st.integers(0, 255))
def test_a_link_that_gives_up_has_applied_nothing_twice(operations, faults, seq):
    # Too few tries for the faults: a command may fail, but what reached the
    # board was applied once, in order, and nothing after the failed command.
    with connected(faults, seq=seq, retries=2) as (bus, board):
        expected = []
        failed = None
        try:
            bus.ping()
            for kind, word, arg in operations:
                if kind == "write":
                    chunks = [arg[i:i + p.MAX_BURST] for i in range(0, len(arg), p.MAX_BURST)]
                    for start, chunk in zip(range(0, len(arg), p.MAX_BURST), chunks):
                        failed = [(4 * word + 4 * (start + i), v) for i, v in enumerate(chunk)]
                        bus.write_words(4 * word + 4 * start, chunk)
                        expected += failed
                        failed = None
                else:
                    bus.read_words(4 * word, arg)
        except DeviceError as error:
            assert str(error).startswith("no ")
    # The failed write may have been applied (its answers lost), but only once.
    assert board.applied in (expected, expected + (failed or []))


# The bridge's gateware under the same faults (Amaranth's simulator; fewer examples).

BRIDGE_STEP = st.tuples(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),   # the words of a write
    st.integers(0, WORDS - 1),                                      # its word address
    st.none() | FAULT,                                              # what spoils the first try
    st.booleans())                                                  # its acknowledgement is lost


def _bridge_bench():
    """The bridge's test harness (tests/boards/test_bridge.py)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).with_name("test_bridge.py")
    spec = importlib.util.spec_from_file_location("bridge_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(BRIDGE_STEP, min_size=1, max_size=3), seed=st.integers(0, 2**16))
# The last byte sent twice leaves the whole frame before the extra byte: it is applied.
@example(steps=[([0, 0], 0, ("duplicate", 17, 0), False)], seed=0)
def test_the_bridge_applies_each_write_once_under_faults(steps, seed):
    bench = _bridge_bench()
    TIMEOUT = bench.TIMEOUT
    h = bench.Harness(stall=0.2, seed=seed)
    expected = []

    async def settle(ctx):
        # Longer than the inter-byte timeout and a NAK: whatever the bridge
        # answers to a spoiled frame has arrived; drop it.
        await ctx.tick().repeat(4 * TIMEOUT + 200)
        h.received.clear()

    async def testbench(ctx):
        for number, (words, word, fault, lost) in enumerate(steps):
            frame = p.encode_command(p.OP_WRITE, number, 4 * word, words=words)
            # A fault that leaves the whole frame in front (the last byte sent twice)
            # spoils nothing: the write is applied and the next try is a repeat.
            applied = False
            if fault is not None:
                spoiled = spoil(frame, fault)
                applied = spoiled[:len(frame)] == frame
                await h.send(ctx, spoiled)
                await settle(ctx)
            await h.send(ctx, frame)
            replayed = p.STATUS_REPLAYED if applied else 0
            assert await h.response(ctx) == (number, p.STATUS_OK | replayed, 0, [])
            if lost:   # the host never saw that answer and sends the frame again
                await h.send(ctx, frame)
                assert await h.response(ctx) == (number, p.STATUS_OK | p.STATUS_REPLAYED, 0, [])
            expected.extend((4 * (word + i), value) for i, value in enumerate(words))

    h.run(testbench)
    assert h.writes == expected
