"""The boards zeroskip builds for: devices, clocks, LEDs, link and default sizes.

:data:`BOARDS` maps a board name to its :class:`BoardInfo`; ``ulx3s`` is an
alias of ``ulx3s-85f`` (:data:`ALIASES`). :func:`get_board` resolves a name
and raises :class:`UnknownBoardError` listing the known ones.
"""

import dataclasses
import importlib

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import ZeroskipError

__all__ = ["BoardInfo", "BOARDS", "ALIASES", "DEFAULT_BOARD", "BoardError", "UnknownBoardError",
           "get_board", "LED_ROLES", "defaults_table"]

#: What the status LEDs show, in the order boards list them.
LED_ROLES = ("heartbeat", "busy", "done", "error", "link", "link_error")


class BoardError(ZeroskipError):
    """A board build or programming problem."""


class UnknownBoardError(BoardError, ValueError):
    """A board name zeroskip does not know."""


@dataclasses.dataclass(frozen=True)
class BoardInfo:
    """One board target.

    Attributes
    ----------
    name : str
    title : str
        Human-readable name with the device.
    family : str
        ``"ice40"`` or ``"ecp5"``.
    device : str
    platform : str
        ``module:class`` of the amaranth-boards platform.
    oscillator : str
        Clock resource name.
    oscillator_hz : float
    default_clock_mhz : float
        The ``sync`` clock a build targets unless told otherwise.
    config : AcceleratorConfig
        The default accelerator, sized to fit the device.
    leds : dict
        LED role (see :data:`LED_ROLES`) -> ``(resource, number, subsignal)``;
        ``subsignal`` is ``None`` for a plain LED.
    loader_board : str or None
        openFPGALoader's ``-b`` name; ``None`` when zeroskip does not program it.
    bitstream : str
        Extension of the file that is programmed (``bin`` or ``bit``).
    serial_port : str or None
        The usual host serial device of the board's link.
    link : str
        Where the UART link is.
    synth_opts : tuple of str
        Extra options of ``synth_<family>``.
    """

    name: str
    title: str
    family: str
    device: str
    platform: str
    oscillator: str
    oscillator_hz: float
    default_clock_mhz: float
    config: AcceleratorConfig
    leds: dict
    loader_board: object
    bitstream: str
    serial_port: object
    link: str
    synth_opts: tuple = ()

    def make_platform(self):
        """A fresh amaranth-boards platform instance for this board."""
        module, _, name = self.platform.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if self.name == "orangecrab":
            cls = _without_dfu_suffix(cls)
        platform = cls()
        if self.name == "icebreaker":
            platform.add_resources(platform.break_off_pmod)
        if self.name == "orangecrab":
            _add_feather_uart(platform)
        return platform


def _without_dfu_suffix(cls):
    """The OrangeCrab platform without its ``dfu-suffix`` step (we only make the bitstream)."""

    class OrangeCrabBitstream(cls):
        @property
        def required_tools(self):
            return [tool for tool in super().required_tools if tool != "dfu-suffix"]

        @property
        def command_templates(self):
            return [t for t in super().command_templates if "dfu-suffix" not in t]

    return OrangeCrabBitstream


def _add_feather_uart(platform):
    from amaranth.build import Attrs
    from amaranth_boards.resources import UARTResource
    platform.add_resources([
        UARTResource(0, rx="0", tx="1", conn=("io", 0),
                     attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")),
    ])


_ICEBREAKER_LEDS = {
    "heartbeat": ("led", 1, None),   # green, on the main board
    "error": ("led", 0, None),       # red, on the main board
    "link_error": ("led", 2, None),  # red, on the snap-off PMOD
    "busy": ("led", 3, None),
    "done": ("led", 4, None),
    "link": ("led", 5, None),
}
_ULX3S_LEDS = {role: ("led", index, None) for index, role in enumerate(LED_ROLES)}
_ORANGECRAB_LEDS = {
    "heartbeat": ("rgb_led", 0, "g"),
    "error": ("rgb_led", 0, "r"),
    "busy": ("rgb_led", 0, "b"),
}


def _ulx3s(size, pes, nz_depth, clock_mhz):
    return BoardInfo(
        name=f"ulx3s-{size}f", title=f"ULX3S (ECP5 LFE5U-{size}F)", family="ecp5",
        device=f"LFE5U-{size}F", platform=f"amaranth_boards.ulx3s:ULX3S_{size}F_Platform",
        oscillator="clk25", oscillator_hz=25e6, default_clock_mhz=clock_mhz,
        config=AcceleratorConfig(pes=pes, x_depth=1024, nz_depth=nz_depth, row_depth=256,
                                 imem_depth=64),
        leds=_ULX3S_LEDS, loader_board="ulx3s", bitstream="bit", serial_port="/dev/ttyUSB0",
        link="on-board FTDI (USB)")


BOARDS = {
    "icebreaker": BoardInfo(
        name="icebreaker", title="iCEBreaker (iCE40UP5K)", family="ice40", device="iCE40UP5K",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
        oscillator="clk12", oscillator_hz=12e6, default_clock_mhz=24,
        # Two PEs filled 91 % of the UP5K's logic cells and reached 29 MHz
        # with the shared gather crossbar (see bench/boards.py); three did
        # not fit. No room for the scatter/reduce network. Each lane now
        # reads its own copy of x: one bank, one EBR per lane. With the
        # registered block RAM reads two PEs and the move engine need 5,326
        # of the 5,280 cells: no room for MOVE either.
        config=AcceleratorConfig(pes=2, value_width=8, acc_width=24, x_depth=128, x_banks=1,
                                 nz_depth=256, row_depth=32, imem_depth=8, reduce=False,
                                 move=False),
        leds=_ICEBREAKER_LEDS, loader_board="ice40_generic", bitstream="bin",
        serial_port="/dev/ttyUSB1", link="on-board FTDI, channel B (USB)",
        synth_opts=("-dsp",)),
    # With the shared gather crossbar a PE cost about 3,000 LUT4s and 16 PEs
    # on the 85F did not finish routing; default clocks leave a margin below
    # the Fmax then measured by bench/boards.py (85F, 8 PEs: 53 MHz). With
    # the clustered gather (one x copy per lane) Yosys synth_ecp5 counts
    # 1,364 LUT4, 993 FF, 292 CCU2C and 6 DP16KD per lane (CSR with the
    # reduce network, nz_depth 512; 2 -> 4 PEs). The defaults below are not
    # yet re-measured by place and route: times at these clocks are labelled
    # unrouted estimates until 'zeroskip build' records a routed build
    # (zeroskip.boards.record).
    "ulx3s-12f": _ulx3s(12, 2, 512, 50),
    "ulx3s-25f": _ulx3s(25, 4, 1024, 50),
    "ulx3s-45f": _ulx3s(45, 6, 2048, 40),
    "ulx3s-85f": _ulx3s(85, 8, 2048, 50),
    "orangecrab": BoardInfo(
        name="orangecrab", title="OrangeCrab r0.2 (ECP5 LFE5U-25F)", family="ecp5",
        device="LFE5U-25F", platform="amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
        oscillator="clk", oscillator_hz=48e6, default_clock_mhz=60,
        config=AcceleratorConfig(pes=4, x_depth=1024, nz_depth=1024, row_depth=256,
                                 imem_depth=64),
        leds=_ORANGECRAB_LEDS, loader_board=None, bitstream="bit", serial_port=None,
        link="Feather pins 0 (RX) and 1 (TX), for an external 3.3 V USB-serial adapter"),
}

#: Other names accepted for a board.
ALIASES = {"ulx3s": "ulx3s-85f"}
#: The board whose clock times assume when no board is named (infer, run, bench).
DEFAULT_BOARD = "ulx3s-85f"


def get_board(name):
    """The :class:`BoardInfo` called ``name`` (or one of its aliases).

    Raises
    ------
    UnknownBoardError
        Naming the known boards.
    """
    if isinstance(name, BoardInfo):
        return name
    key = ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in BOARDS:
        known = ", ".join(list(BOARDS) + list(ALIASES))
        raise UnknownBoardError(f"unknown board {name!r}; known boards: {known}")
    return BOARDS[key]


def defaults_table():
    """The clock and accelerator each board builds by default, as lines of text."""
    lines = [f"{'board':<11} {'clock':>7} {'PEs':>3} {'value':>5} {'acc':>3} {'x depth':>7} "
             f"{'x banks':>7} {'nz depth':>8} {'row depth':>9} {'imem':>4}  formats  reduce"]
    for board in BOARDS.values():
        c = board.config
        lines.append(
            f"{board.name:<11} {board.default_clock_mhz:>3g} MHz {c.pes:>3} {c.value_width:>5} "
            f"{c.acc_width:>3} {c.x_depth:>7} {c.x_banks:>7} {c.nz_depth:>8} {c.row_depth:>9} "
            f"{c.imem_depth:>4}  {','.join(c.formats):<7}  {'yes' if c.reduce else 'no'}")
    return lines
