"""Clocking for board tops: PLL settings and the ``sync`` domain with its reset.

:func:`ice40_pll` and :func:`ecp5_pll` search the divider settings of the
iCE40 ``SB_PLL40`` (like ``icepll``) and the ECP5 ``EHXPLLL`` (like
``ecppll``) for the frequency nearest a target. :class:`SyncClock` builds the
``sync`` domain from a board oscillator, through a PLL when the target
differs from the oscillator, and holds it in reset until the PLL has locked
and a few cycles more.
"""

import dataclasses

from amaranth import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer

__all__ = ["PllSettings", "ice40_pll", "ecp5_pll", "SyncClock", "PLL_TOLERANCE"]

#: Largest relative error between a target and what a PLL can make.
PLL_TOLERANCE = 0.01
#: Time the ``sync`` domain is held in reset after configuration or PLL lock.
POR_SECONDS = 20e-6


@dataclasses.dataclass(frozen=True)
class PllSettings:
    """Divider settings of one PLL and the frequency they make.

    Attributes
    ----------
    family : str
        ``"ice40"`` or ``"ecp5"``.
    input_hz, output_hz, vco_hz : float
    params : dict
        Instance parameters (without the ``p_`` prefix).
    """

    family: str
    input_hz: float
    output_hz: float
    vco_hz: float
    params: dict


def _check(family, input_hz, output_hz, best, low, high):
    if best is None or abs(best.output_hz - output_hz) > PLL_TOLERANCE * output_hz:
        raise ValueError(f"The {family} PLL cannot make {output_hz / 1e6:g} MHz from "
                         f"{input_hz / 1e6:g} MHz; it makes {low / 1e6:g} to "
                         f"{high / 1e6:g} MHz")
    return best


def ice40_pll(input_hz, output_hz):
    """Settings of an iCE40 ``SB_PLL40`` in ``SIMPLE`` feedback mode.

    Raises
    ------
    ValueError
        If no setting is within 1 % of ``output_hz`` (the PLL makes 16 to
        275 MHz).
    """
    best = None
    for divr in range(16):
        pfd = input_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if not 16e6 <= out <= 275e6:
                    continue
                if best is None or abs(out - output_hz) < abs(best.output_hz - output_hz):
                    filter_range = next((i + 1 for i, top in enumerate(
                        (17e6, 26e6, 44e6, 66e6, 101e6)) if pfd < top), 6)
                    best = PllSettings("ice40", input_hz, out, vco, {
                        "FEEDBACK_PATH": "SIMPLE", "DIVR": divr, "DIVF": divf, "DIVQ": divq,
                        "FILTER_RANGE": filter_range,
                    })
    return _check("iCE40", input_hz, output_hz, best, 16e6, 275e6)


def ecp5_pll(input_hz, output_hz):
    """Settings of an ECP5 ``EHXPLLL`` with ``CLKOP`` fed back.

    Raises
    ------
    ValueError
        If no setting is within 1 % of ``output_hz`` (the PLL makes about
        3.2 to 400 MHz).
    """
    best = None
    best_error = None
    for clki_div in range(1, 129):
        pfd = input_hz / clki_div
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            if not 3.125e6 <= out <= 400e6:
                continue
            error = abs(out - output_hz)
            if best_error is not None and error >= best_error:
                continue
            clkop_div = min(range(1, 129), key=lambda d: abs(out * d - 600e6))
            vco = out * clkop_div
            if not 400e6 <= vco <= 800e6:
                continue
            best_error = error
            best = PllSettings("ecp5", input_hz, out, vco, {
                "CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
                "CLKOP_CPHASE": (clkop_div - 1) // 2, "CLKOP_FPHASE": 0,
            })
    return _check("ECP5", input_hz, output_hz, best, 3.125e6, 400e6)


class SyncClock(Elaboratable):
    """The clock and reset of a board top's ``sync`` domain, from its oscillator.

    The top defines the ``sync`` domain and drives it from :attr:`clk` and
    :attr:`rst`.

    Parameters
    ----------
    family : str
        ``"ice40"`` or ``"ecp5"``.
    oscillator : str
        Name of the platform's clock resource.
    oscillator_hz : float
    target_hz : float
        The ``sync`` frequency; within 1 % of ``oscillator_hz`` for no PLL.

    Attributes
    ----------
    pll : PllSettings or None
    frequency : float
        What the clock really runs at.
    clk : Signal
        The clock.
    rst : Signal
        High after configuration, while the PLL is unlocked and for
        ``POR_SECONDS`` after it locked; synchronous to :attr:`clk`.
    """

    def __init__(self, *, family, oscillator, oscillator_hz, target_hz):
        if family not in ("ice40", "ecp5"):
            raise ValueError(f"Family must be 'ice40' or 'ecp5', not {family!r}")
        self.family = family
        self.oscillator = oscillator
        self.oscillator_hz = oscillator_hz
        self.pll = None
        if abs(target_hz - oscillator_hz) > PLL_TOLERANCE * oscillator_hz:
            self.pll = (ice40_pll if family == "ice40" else ecp5_pll)(oscillator_hz, target_hz)
        self.frequency = self.pll.output_hz if self.pll else oscillator_hz
        self.clk = Signal()
        self.rst = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        if self.pll is None:
            m.submodules.oscillator = clk = io.Buffer("i", platform.request(
                self.oscillator, 0, dir="-"))
            m.d.comb += [self.clk.eq(clk.i), locked.eq(1)]
        elif self.family == "ice40":
            pad = platform.request(self.oscillator, 0, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                **{f"p_{key}": value for key, value in self.pll.params.items()},
                i_PACKAGEPIN=pad.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=self.clk, o_LOCK=locked)
        else:
            m.submodules.oscillator = clk = io.Buffer("i", platform.request(
                self.oscillator, 0, dir="-"))
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{self.oscillator_hz / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self.pll.output_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKOP_ENABLE="ENABLED",
                p_FEEDBK_PATH="CLKOP",
                **{f"p_{key}": value for key, value in self.pll.params.items()},
                i_RST=0, i_STDBY=0, i_CLKI=clk.i, i_CLKFB=self.clk,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=self.clk, o_LOCK=locked)

        # Reset: held after configuration (iCE40 block RAMs are not usable
        # for a few microseconds) and whenever the PLL is not locked.
        m.domains.por = por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += por.clk.eq(self.clk)
        locked_sync = Signal()
        m.submodules.locked = FFSynchronizer(locked, locked_sync, o_domain="por")
        delay = max(16, int(POR_SECONDS * self.frequency))
        timer = Signal(range(delay + 1))
        with m.If(~locked_sync):
            m.d.por += timer.eq(0)
        with m.Elif(timer != delay):
            m.d.por += timer.eq(timer + 1)
        m.d.por += self.rst.eq(timer != delay)
        return m
