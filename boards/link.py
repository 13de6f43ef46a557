"""The host side of a board's UART link: a bus for the one driver.

:class:`SerialBus` gives :class:`~zeroskip.sim.driver.Driver` its two
coroutines, ``write(addr, words)`` and ``read(addr, count)``, over a serial
port (pyserial) to the board's :class:`~zeroskip.boards.bridge.UartAxiBridge`.
Frames, checksums and sequence numbers are those of
:mod:`zeroskip.boards.protocol`. A command answered with NAK, not answered in
time or answered with a bad checksum is sent again, with the same sequence
number, so a write whose acknowledgement was lost is not applied twice.
"""

import os
import random
import time

from zeroskip.boards import protocol as p
from zeroskip.core.config import check_generated
from zeroskip.core.errors import DeviceError

__all__ = ["SerialBus", "LinkStats", "run_on_board", "run_job_on_board", "CLOCK_POLL"]

#: Wall-clock seconds between two looks at the port when the bus measures
#: its timeouts with a clock of its own (a simulation's time).
CLOCK_POLL = 0.002


class LinkStats:
    """Counts of what happened on a link (for diagnostics and tests).

    Attributes
    ----------
    commands, retries, timeouts, naks, bad_responses, stale_responses, replays : int
    """

    FIELDS = ("commands", "retries", "timeouts", "naks", "bad_responses", "stale_responses",
              "replays")

    def __init__(self):
        for name in self.FIELDS:
            setattr(self, name, 0)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.FIELDS}

    def __repr__(self):
        return "LinkStats(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items()) + ")"


class _Retry(Exception):
    def __init__(self, reason, *, settle):
        super().__init__(reason)
        self.reason = reason
        self.settle = settle


def _open_error(port, error):
    context = error.__context__
    if isinstance(context, OSError) and context.strerror:
        reason = context.strerror
    elif isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        reason = str(error)
    return DeviceError(f"cannot open {port}: {reason}")


class SerialBus:
    """A zeroskip board behind its UART bridge, as a driver bus.

    The port is opened on first use (or by :meth:`open`); the first command
    is a ping that checks that a zeroskip bridge answers. The coroutines block
    while they wait for the board (a serial link has nothing else to do).

    Parameters
    ----------
    port : str
        The serial device, e.g. ``/dev/ttyUSB1`` (an iCEBreaker's second
        FTDI channel) or ``/dev/ttyUSB0`` (ULX3S).
    baudrate : int
        Must match the bitstream's (:data:`~zeroskip.boards.protocol.DEFAULT_BAUDRATE`).
    timeout : float
        Seconds to wait for an answer before sending a command again.
    retries : int
        Tries per command before giving up.
    retry_delay : float
        Seconds the line is left idle before a command is sent again after a
        timeout or a bad answer; longer than the board's inter-byte timeout,
        so the board has dropped whatever it was receiving.
    clock : callable, optional
        Returns the time in seconds that ``timeout`` and ``retry_delay`` are
        measured in (default :func:`time.monotonic`). A simulation of the
        board passes its simulated time, so that a waiting host gives the
        simulated line the same time whatever the load of the machine; the
        port is then polled every :data:`CLOCK_POLL` seconds of wall time.

    Raises
    ------
    TypeError
        If a parameter has the wrong type or range.
    """

    def __init__(self, port, *, baudrate=p.DEFAULT_BAUDRATE, timeout=0.5, retries=5,
                 retry_delay=0.05, clock=None):
        if not isinstance(port, (str, os.PathLike)):
            raise TypeError(f"Port must be a device path, not {port!r}")
        if not isinstance(baudrate, int) or isinstance(baudrate, bool) or baudrate <= 0:
            raise TypeError(f"Baud rate must be a positive integer, not {baudrate!r}")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise TypeError(f"Timeout must be a positive number of seconds, not {timeout!r}")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
            raise TypeError(f"Retries must be a positive integer, not {retries!r}")
        if not isinstance(retry_delay, (int, float)) or retry_delay < 0:
            raise TypeError(f"Retry delay must be a non-negative number of seconds, "
                            f"not {retry_delay!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"Clock must be a callable that returns seconds, not {clock!r}")
        self.port = os.fspath(port)
        self.baudrate = baudrate
        self.timeout = float(timeout)
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self._clock = time.monotonic if clock is None else clock
        self._poll = None if clock is None else CLOCK_POLL
        self.stats = LinkStats()
        self._serial = None
        self._seq = random.SystemRandom().randrange(256)

    # Opening and closing.

    def open(self):
        """Open the port and ping the bridge.

        Returns
        -------
        int
            The ping word (:func:`~zeroskip.boards.protocol.ping_word`).

        Raises
        ------
        DeviceError
            If the port cannot be opened, nothing answers, or what answers is
            not a zeroskip bridge.
        """
        if self._serial is not None:
            return None
        try:
            import serial
        except ImportError:
            raise DeviceError("pyserial is not installed: pip install pyserial "
                              "(or pip install zeroskip[fpga])") from None
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=self.timeout,
                                         write_timeout=max(1.0, 10 * self.timeout))
        except (serial.SerialException, OSError, ValueError) as error:
            raise _open_error(self.port, error) from None
        try:
            self._serial.reset_input_buffer()
            return self.ping()
        except BaseException:
            self.close()
            raise

    def close(self):
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def ping(self):
        """Ping the bridge; return its ping word."""
        _, words = self._transact(p.OP_PING, 0)
        word = words[0]
        if word >> 16 != p.PING_MAGIC:
            raise DeviceError(f"{self.port} answers, but not as a zeroskip board "
                              f"(ping answer 0x{word:08x})")
        version = word & 0xFF
        if version != p.PROTOCOL_VERSION:
            raise DeviceError(f"the board on {self.port} speaks link protocol version {version}, "
                              f"this zeroskip speaks version {p.PROTOCOL_VERSION}; rebuild and "
                              f"program the bitstream")
        return word

    # The bus.

    async def write(self, addr, words):
        """Write 32-bit ``words`` to consecutive word addresses from ``addr``."""
        self.write_words(addr, words)

    async def read(self, addr, count):
        """Read ``count`` 32-bit words from consecutive word addresses."""
        return self.read_words(addr, count)

    def write_words(self, addr, words):
        """Blocking form of :meth:`write`."""
        words = [int(w) & 0xFFFF_FFFF for w in words]
        for start in range(0, len(words), p.MAX_BURST):
            chunk = words[start:start + p.MAX_BURST]
            base = addr + 4 * start
            status, _ = self._transact(p.OP_WRITE, base, words=chunk)
            if (status[0] & ~p.STATUS_REPLAYED) == p.STATUS_SLVERR:
                self._slverr("write", base + 4 * status[1])

    def read_words(self, addr, count):
        """Blocking form of :meth:`read`."""
        result = []
        for start in range(0, count, p.MAX_BURST):
            n = min(p.MAX_BURST, count - start)
            base = addr + 4 * start
            status, words = self._transact(p.OP_READ, base, count=n)
            if status[0] == p.STATUS_SLVERR:
                self._slverr("read", base + 4 * status[1])
            result.extend(words)
        return result

    @staticmethod
    def _slverr(kind, addr):
        raise DeviceError(f"the accelerator rejected the {kind} of address 0x{addr:07x} (SLVERR)")

    # Transactions.

    def _transact(self, op, addr, *, count=0, words=()):
        if self._serial is None:
            self.open()
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        frame = p.encode_command(op, seq, addr, count=count, words=words)
        expected = {p.OP_READ: count, p.OP_PING: 1, p.OP_WRITE: 0}[op]
        self.stats.commands += 1
        problems = []
        for attempt in range(self.retries):
            if attempt:
                self.stats.retries += 1
            try:
                self._serial.write(frame)
                self._serial.flush()
                answer, data = self._receive(seq, expected)
            except _Retry as retry:
                problems.append(retry.reason)
                if retry.settle:
                    self._settle()
                self._serial.reset_input_buffer()
                continue
            except OSError as error:
                raise DeviceError(f"the link to {self.port} failed: {error}") from None
            if answer[0] & p.STATUS_REPLAYED:
                self.stats.replays += 1
            return answer, data
        raise self._give_up(problems)

    def _give_up(self, problems):
        tries = f"{self.retries} {'try' if self.retries == 1 else 'tries'}"
        hint = (f"is the board connected, programmed with a zeroskip bitstream and its link "
                f"set to {self.baudrate} baud?")
        if all(problem == "timeout" for problem in problems):
            return DeviceError(f"no answer from {self.port} after {tries} "
                               f"({self.timeout:g} s each); {hint}")
        counts = {}
        for problem in problems:
            counts[problem] = counts.get(problem, 0) + 1
        summary = ", ".join(f"{n} x {problem}" for problem, n in counts.items())
        return DeviceError(f"no valid answer from {self.port} after {tries} ({summary}); "
                           f"the link is unreliable: check the cable and the baud rate "
                           f"({self.baudrate})")

    def _settle(self):
        """Leave the line idle for ``retry_delay`` seconds of the bus's clock."""
        if self._poll is None:
            time.sleep(self.retry_delay)
            return
        end = self._clock() + self.retry_delay
        while self._clock() < end:
            time.sleep(self._poll)

    def _read_exact(self, size, deadline):
        data = bytearray()
        while len(data) < size:
            remaining = deadline - self._clock()
            if remaining <= 0:
                # Take what has arrived before giving up: the clock may be a
                # simulation's, which runs on while this thread waits for the CPU.
                self._serial.timeout = 0
                data += self._serial.read(size - len(data))
                break
            self._serial.timeout = remaining if self._poll is None else self._poll
            data += self._serial.read(size - len(data))
        return bytes(data)

    def _receive(self, seq, expected):
        """Wait for the answer to command ``seq``; return ``((status, index), words)``."""
        deadline = self._clock() + self.timeout
        while True:
            byte = self._read_exact(1, deadline)
            if not byte:
                self.stats.timeouts += 1
                raise _Retry("timeout", settle=True)
            if byte[0] != p.SYNC_RSP:
                continue
            header = self._read_exact(p.RESPONSE_HEADER - 1, deadline)
            if len(header) < p.RESPONSE_HEADER - 1:
                self.stats.timeouts += 1
                raise _Retry("timeout", settle=True)
            rest = self._read_exact(4 * header[1] + p.RESPONSE_TRAILER, deadline)
            try:
                rsp_seq, status, index, words = p.parse_response(byte + header + rest)
            except p.ProtocolError:
                self.stats.bad_responses += 1
                raise _Retry("bad answer", settle=True) from None
            if status == p.STATUS_NAK:
                self.stats.naks += 1
                raise _Retry("NAK", settle=False)
            if rsp_seq != seq:
                # A late answer to an earlier try: keep waiting for ours.
                self.stats.stale_responses += 1
                continue
            if len(words) != expected or (status & ~p.STATUS_REPLAYED) not in (
                    p.STATUS_OK, p.STATUS_SLVERR):
                self.stats.bad_responses += 1
                raise _Retry("bad answer", settle=True)
            return (status, index), words


def run_on_board(program, x_int, *, port, baudrate=p.DEFAULT_BAUDRATE, timeout=0.5, retries=5,
                 progress=None):
    """Run ``program`` on the board at ``port`` (the ``board`` backend).

    Parameters
    ----------
    program : Program
        Built for the configuration of the board's bitstream (the driver
        checks the hardware's fingerprint).
    x_int : array of int
        The quantized input vector.
    port : str
        The board's serial device.
    baudrate, timeout, retries
        As for :class:`SerialBus`.
    progress : callable, optional
        ``progress(done, total)`` after each tile.

    Returns
    -------
    RunResult

    Raises
    ------
    DeviceError
        If the board cannot be reached or reports an error.
    ProgramMismatchError
        If the bitstream was built for another configuration.
    """
    from zeroskip.sim.backends import Job
    return run_job_on_board(Job(program, x_int), port=port, baudrate=baudrate, timeout=timeout,
                            retries=retries, progress=progress)


def run_job_on_board(job, *, port, baudrate=p.DEFAULT_BAUDRATE, timeout=0.5, retries=5,
                     progress=None):
    """Run a :class:`~zeroskip.sim.backends.Job` or, loaded once and kept on chip, a
    :class:`~zeroskip.sim.backends.SessionJob` on the board at ``port``.

    Parameters as for :func:`run_on_board`; ``progress(done, total)`` after
    each tile of a job, each operand of a session. Returns a
    :class:`~zeroskip.sim.driver.RunResult` (a list of them for a session).
    The hardware's identity and configuration fingerprint are checked
    before anything is loaded.

    Raises
    ------
    DeviceError
        If the board cannot be reached or reports an error.
    ProgramMismatchError
        If the bitstream was built for another configuration.
    """
    import asyncio

    from zeroskip.sim.backends import run_job

    config = job.program.config
    check_generated(config)
    with SerialBus(port, baudrate=baudrate, timeout=timeout, retries=retries) as bus:
        result = asyncio.run(run_job(bus, config, job, max_polls=1_000_000, progress=progress))
    for one in result if isinstance(result, list) else [result]:
        one.backend = "board"
    return result
