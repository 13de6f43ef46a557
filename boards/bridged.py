"""The logic of a board: UART, link bridge and accelerator, without pins or clocking.

:class:`BridgedAccelerator` is what every board top wraps (adding a PLL,
reset, pins and LEDs) and what the board-level co-simulation runs::

    uart_rx ─► UartRx ─► UartAxiBridge ─AXI4-Lite─► ZeroskipTop
    uart_tx ◄─ UartTx ◄─┘
"""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from zeroskip.boards import protocol
from zeroskip.boards.bridge import UartAxiBridge
from zeroskip.boards.uart import UartRx, UartTx, uart_divisor
from zeroskip.core.isa import CTRL_CLEAR, CTRL_START, STATUS_ERROR, Reg
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.top import ZeroskipTop

__all__ = ["BridgedAccelerator", "DEFAULT_LINK_TIMEOUT"]

#: Seconds of silence inside a frame after which the bridge drops it.
DEFAULT_LINK_TIMEOUT = 0.02


class BridgedAccelerator(ConfigComponent):
    """A zeroskip accelerator behind a UART link.

    Parameters
    ----------
    config : AcceleratorConfig
    clock_hz : int or float
        Frequency of the ``sync`` clock domain.
    baudrate : int
        Baud rate of the link (8N1); the clock must give at least 4 cycles per
        bit within 2 %.
    link_timeout : float
        Seconds of silence inside a frame after which the bridge drops it; at
        least two byte times.

    Attributes
    ----------
    uart_rx : In(1)
        Serial data from the host (idle high).
    uart_tx : Out(1)
        Serial data to the host (idle high).
    busy : Out(1)
        High from a start written to ``CTRL`` until the run ends.
    done : Out(1)
        High while the last run has ended without an error.
    error : Out(1)
        High while the last run has ended and the host read an error from
        ``STATUS``.
    link_active : Out(1)
        High while the bridge receives, executes or answers a frame.
    link_nak : Out(1)
        Pulses when the bridge drops a frame.
    """

    def __init__(self, config, *, clock_hz, baudrate=protocol.DEFAULT_BAUDRATE,
                 link_timeout=DEFAULT_LINK_TIMEOUT):
        check_config(config)
        if not isinstance(clock_hz, (int, float)) or isinstance(clock_hz, bool) or clock_hz <= 0:
            raise TypeError(f"Clock frequency must be a positive number, not {clock_hz!r}")
        if not isinstance(link_timeout, (int, float)) or link_timeout <= 0:
            raise TypeError(f"Link timeout must be a positive number of seconds, "
                            f"not {link_timeout!r}")
        self._divisor = uart_divisor(clock_hz=clock_hz, baudrate=baudrate)
        self._timeout_cycles = round(link_timeout * clock_hz)
        if self._timeout_cycles < 20 * self._divisor:
            raise ValueError(f"Link timeout {link_timeout:g} s is shorter than two bytes at "
                             f"{baudrate} baud")
        self._clock_hz = clock_hz
        self._baudrate = baudrate
        super().__init__(config, {
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "link_active": Out(1),
            "link_nak": Out(1),
        })

    @property
    def divisor(self):
        """Clock cycles per UART bit."""
        return self._divisor

    @property
    def timeout_cycles(self):
        """The bridge's inter-byte timeout in clock cycles."""
        return self._timeout_cycles

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UartRx(divisor=self._divisor)
        m.submodules.tx = tx = UartTx(divisor=self._divisor)
        m.submodules.bridge = bridge = UartAxiBridge(timeout_cycles=self._timeout_cycles)
        m.submodules.accel = accel = ZeroskipTop(self._config)
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]
        wiring.connect(m, rx.data, bridge.rx)
        wiring.connect(m, bridge.tx, tx.data)
        wiring.connect(m, bridge.axil, accel.axil)
        m.d.comb += [self.link_active.eq(bridge.active), self.link_nak.eq(bridge.nak)]

        # Status for LEDs, observed on the AXI4-Lite port: runs start with a
        # write to CTRL and end with irq; errors are what the host reads from
        # STATUS.
        axil = bridge.axil
        running = Signal()
        failed = Signal()
        status_read = Signal()
        ctrl_write = axil.awvalid & axil.awready & (axil.awaddr == Reg.CTRL)
        with m.If(ctrl_write & (axil.wdata & CTRL_START).any()):
            m.d.sync += [running.eq(1), failed.eq(0)]
        with m.Elif(ctrl_write & (axil.wdata & CTRL_CLEAR).any()):
            m.d.sync += failed.eq(0)
        with m.Elif(accel.irq):
            m.d.sync += running.eq(0)
        with m.If(axil.arvalid & axil.arready):
            m.d.sync += status_read.eq(axil.araddr == Reg.STATUS)
        with m.If(axil.rvalid & axil.rready & status_read):
            m.d.sync += failed.eq((axil.rdata & STATUS_ERROR).any())
        m.d.comb += [
            self.busy.eq(running & ~accel.irq),
            self.done.eq(accel.irq & ~failed),
            self.error.eq(accel.irq & failed),
        ]
        return m
