"""Board tops: the board's logic with clocking, reset, UART pins and status LEDs.

One :class:`BoardTop` serves every board of :data:`~zeroskip.boards.targets.BOARDS`:

- clocking: the ``sync`` domain from the board oscillator, through the PLL
  (iCE40 ``SB_PLL40_PAD``, ECP5 ``EHXPLLL``) when the requested clock differs;
  reset held after configuration and while the PLL is unlocked
  (:class:`~zeroskip.boards.clocking.SyncClock`);
- :class:`~zeroskip.boards.bridged.BridgedAccelerator` on the board's UART;
- LEDs: heartbeat (blinks about once a second while the clock runs), busy,
  done, error (a run stopped with an error), link (a frame is being handled)
  and link error (a frame was dropped); short events are stretched to be
  visible. Boards with fewer LEDs show fewer roles (see ``BoardInfo.leds``).
"""

from amaranth import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io

from zeroskip.boards import protocol
from zeroskip.boards.bridged import BridgedAccelerator
from zeroskip.boards.clocking import SyncClock
from zeroskip.boards.targets import get_board
from zeroskip.core.config import AcceleratorConfig

__all__ = ["BoardTop", "LED_STRETCH_SECONDS"]

#: How long a short event (a frame, a NAK) keeps its LED lit.
LED_STRETCH_SECONDS = 0.05


class BoardTop(Elaboratable):
    """The top level of one board.

    Parameters
    ----------
    board : str or BoardInfo
        A name of :data:`~zeroskip.boards.targets.BOARDS`.
    config : AcceleratorConfig, optional
        The board's default when omitted.
    clock_mhz : float, optional
        The ``sync`` clock; the board's default when omitted.
    baudrate : int
        The link's baud rate.

    Attributes
    ----------
    board : BoardInfo
    config : AcceleratorConfig
    clock : SyncClock
        Its ``frequency`` is what the clock really runs at.

    Raises
    ------
    UnknownBoardError
        For a board zeroskip does not know.
    ValueError
        If the PLL cannot make the clock or the UART cannot make the baud rate.
    """

    def __init__(self, board, *, config=None, clock_mhz=None,
                 baudrate=protocol.DEFAULT_BAUDRATE):
        self.board = get_board(board)
        if config is None:
            config = self.board.config
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Config must be an AcceleratorConfig, not {config!r}")
        if clock_mhz is None:
            clock_mhz = self.board.default_clock_mhz
        if not isinstance(clock_mhz, (int, float)) or isinstance(clock_mhz, bool) \
                or clock_mhz <= 0:
            raise TypeError(f"Clock must be a positive number of MHz, not {clock_mhz!r}")
        self.config = config
        self.baudrate = baudrate
        self.clock = SyncClock(family=self.board.family, oscillator=self.board.oscillator,
                               oscillator_hz=self.board.oscillator_hz,
                               target_hz=clock_mhz * 1e6)
        # Built now so that a bad baud rate is reported before synthesis.
        self.core = BridgedAccelerator(config, clock_hz=self.clock.frequency, baudrate=baudrate)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clock = clock = self.clock
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += [sync.clk.eq(clock.clk), sync.rst.eq(clock.rst)]
        frequency = clock.frequency
        if clock.pll is not None:
            platform.add_clock_constraint(clock.clk, frequency)
        m.submodules.core = core = self.core

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.uart_rx.eq(rx.i), tx.o.eq(core.uart_tx)]

        # A heartbeat of about 1 Hz: the top bit of a free-running counter.
        beat = Signal(max(1, int(frequency).bit_length()))
        m.d.sync += beat.eq(beat + 1)

        # Short events light their LED for about LED_STRETCH_SECONDS, counted
        # in ticks of the heartbeat counter (no long counter per LED).
        steps = 15
        tick_bits = max(1, int(LED_STRETCH_SECONDS * frequency / steps).bit_length() - 1)
        tick = Signal()
        m.d.sync += tick.eq(beat[:tick_bits].all())

        def stretched(pulse):
            timer = Signal(range(steps + 1))
            with m.If(pulse):
                m.d.sync += timer.eq(steps)
            with m.Elif(tick & (timer != 0)):
                m.d.sync += timer.eq(timer - 1)
            return timer != 0

        roles = {
            "heartbeat": beat[-1],
            "busy": core.busy,
            "done": core.done,
            "error": core.error,
            "link": stretched(core.link_active),
            "link_error": stretched(core.link_nak),
        }
        requested = {}
        for role, (name, number, subsignal) in self.board.leds.items():
            if (name, number) not in requested:
                requested[name, number] = platform.request(name, number, dir="-")
            port = requested[name, number]
            if subsignal:
                port = getattr(port, subsignal)
            m.submodules[f"led_{role}"] = led = io.Buffer("o", port)
            m.d.comb += led.o.eq(roles[role])
        return m
