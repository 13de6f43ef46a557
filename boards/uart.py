"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit).

Both sides count ``divisor`` clock cycles per bit (:func:`uart_divisor`
computes it from the clock and baud rate). The receiver passes its line
through a two-flip-flop synchronizer, waits half a bit after the falling edge
of the start bit, checks that the line is still low (a shorter pulse is a
glitch, not a start bit) and samples every following bit in its middle.
Bytes travel on :mod:`amaranth.lib.stream` interfaces.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["uart_divisor", "UartRx", "UartTx"]

#: Largest relative baud-rate error :func:`uart_divisor` accepts.
MAX_BAUD_ERROR = 0.02
#: Smallest divisor: the receiver needs a few cycles per bit.
MIN_DIVISOR = 4


def uart_divisor(*, clock_hz, baudrate):
    """Clock cycles per bit for ``baudrate`` at ``clock_hz``.

    Raises
    ------
    ValueError
        If the clock is too slow for the baud rate (fewer than 4 cycles per
        bit) or the nearest divisor misses the baud rate by more than 2 %.
    """
    if not isinstance(clock_hz, (int, float)) or clock_hz <= 0:
        raise ValueError(f"Clock frequency must be a positive number, not {clock_hz!r}")
    if not isinstance(baudrate, (int, float)) or baudrate <= 0:
        raise ValueError(f"Baud rate must be a positive number, not {baudrate!r}")
    divisor = round(clock_hz / baudrate)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"Baud rate {baudrate} is too high for a {clock_hz / 1e6:g} MHz clock: "
                         f"the UART needs at least {MIN_DIVISOR} clock cycles per bit")
    error = abs(clock_hz / divisor - baudrate) / baudrate
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"Baud rate {baudrate} cannot be made from a {clock_hz / 1e6:g} MHz "
                         f"clock: the nearest divisor {divisor} is {error:.1%} off")
    return divisor


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        raise TypeError(f"Divisor must be an integer of at least {MIN_DIVISOR}, not {divisor!r}")


class UartRx(wiring.Component):
    """UART receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Attributes
    ----------
    rx : In(1)
        The serial line (idle high); asynchronous to the clock.
    data : Out(stream.Signature(8))
        Received bytes. One byte is buffered; a byte completed while the
        buffer is still full is dropped.
    frame_error : Out(1)
        Pulses when a byte's stop bit reads low (the byte is dropped).
    overrun : Out(1)
        Pulses when a byte is dropped because ``data`` was not taken in time.
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1, stages=2)

        timer = Signal(range(divisor))
        bits = Signal(range(8))
        shreg = Signal(8)
        done = Signal()
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.If(done):
            with m.If(self.data.valid & ~self.data.ready):
                m.d.comb += self.overrun.eq(1)
            with m.Else():
                m.d.sync += [self.data.valid.eq(1), self.data.payload.eq(shreg)]

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += [timer.eq(divisor - 1), bits.eq(0)]
                        m.next = "DATA"
                    with m.Else():
                        m.next = "IDLE"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), timer.eq(divisor - 1),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.comb += done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """UART transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Attributes
    ----------
    data : In(stream.Signature(8))
        Bytes to send; taken when the previous byte's stop bit has ended.
    tx : Out(1)
        The serial line, driven from a register (idle high).
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        shreg = Signal(10, init=1)
        bits = Signal(range(11))
        timer = Signal(range(divisor))
        m.d.comb += self.tx.eq(shreg[0])

        with m.If(bits == 0):
            m.d.comb += self.data.ready.eq(1)
            with m.If(self.data.valid):
                m.d.sync += [
                    shreg.eq(Cat(0, self.data.payload, 1)),
                    bits.eq(10),
                    timer.eq(divisor - 1),
                ]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), bits.eq(bits - 1), timer.eq(divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
