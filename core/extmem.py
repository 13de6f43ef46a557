"""Named external memories: a board's SDRAM as :class:`~zeroskip.core.config.AcceleratorConfig`
fields (``ext_words``, ``ext_latency``, ``ext_words_per_cycle``, ``ext_rate_cycles``).

The figures are estimates from the memory's data sheet and the accelerator's
clock, not measurements: the generated hardware has no external-memory port
yet, so only the ISA model runs them (the load rule of :mod:`zeroskip.core.timing`).

``ulx3s-sdram``: the ULX3S's 32 MB SDR SDRAM (16 M x 16 bits, e.g. the
IS42S16160 or AS4C32M16SB) clocked with the accelerator at its 50 MHz (20 ns):

- size: 16 M x 16 bits = 8 M 32-bit words, ``ext_words`` ``2 ** 23``;
- rate: one 16-bit word per cycle at most, so 2 cycles per 32-bit word. Refresh
  takes 8192 ``AUTO REFRESH`` per 64 ms, one per 7.8 us (390 cycles), each
  about 8 cycles (precharge, tRFC of 60 ns, the row opened again, CAS latency):
  2 %. A sequential read changes row every 512 columns (256 32-bit words, 512
  cycles) for about 4 cycles (precharge, activate, CAS latency): 0.8 %. So
  2 + 2 x 8 / 390 + 4 / 256 = 2.06 cycles per word, rounded up to the next
  eighth: 8 words per 17 cycles (2.125), ``ext_words_per_cycle`` 8,
  ``ext_rate_cycles`` 17;
- latency: the request registered and the command issued (2 cycles), precharge
  (tRP 18 ns, 1), activate (tRCD 18 ns, 1), CAS latency 2, the first 32-bit
  word's two 16-bit beats (2) and its register into the lane memory's write
  port (2): ``ext_latency`` 10.
"""

from __future__ import annotations

import dataclasses

from zeroskip.core.errors import ConfigError

__all__ = ["ExtMemory", "EXT_PRESETS", "ext_preset", "preset_of", "describe_ext"]


@dataclasses.dataclass(frozen=True)
class ExtMemory:
    """One named external memory: its configuration fields and what it is."""

    name: str
    title: str
    ext_words: int
    ext_latency: int
    ext_words_per_cycle: int
    ext_rate_cycles: int

    def fields(self):
        """The configuration fields, ``{name: value}`` (for ``AcceleratorConfig.replace``)."""
        return {"ext_words": self.ext_words, "ext_latency": self.ext_latency,
                "ext_words_per_cycle": self.ext_words_per_cycle,
                "ext_rate_cycles": self.ext_rate_cycles}

    @property
    def cycles_per_word(self):
        """Cycles per 32-bit word once the port streams."""
        return self.ext_rate_cycles / self.ext_words_per_cycle

    def describe(self):
        return (f"{self.name} ({self.title}, an estimate): {self.ext_words:,} words, latency "
                f"{self.ext_latency} cycles, {self.ext_words_per_cycle} words per "
                f"{self.ext_rate_cycles} cycles")


#: The named external memories (see the module documentation for their derivation).
EXT_PRESETS = {
    "ulx3s-sdram": ExtMemory(name="ulx3s-sdram",
                             title="ULX3S 32 MB 16-bit SDR SDRAM at 50 MHz",
                             ext_words=1 << 23, ext_latency=10, ext_words_per_cycle=8,
                             ext_rate_cycles=17),
}


def ext_preset(name):
    """The :class:`ExtMemory` called ``name``.

    Raises
    ------
    ConfigError
        ``"unknown external memory 'NAME'; known: ulx3s-sdram"``.
    """
    if name not in EXT_PRESETS:
        raise ConfigError(f"unknown external memory {name!r}; known: "
                          f"{', '.join(EXT_PRESETS)}")
    return EXT_PRESETS[name]


def preset_of(config):
    """The name of the preset whose fields ``config`` has, or ``None``."""
    for name, preset in EXT_PRESETS.items():
        if all(getattr(config, key) == value for key, value in preset.fields().items()):
            return name
    return None


def describe_ext(config):
    """The external memory of ``config`` (JSON-compatible), or ``None`` without one."""
    if not config.ext_words:
        return None
    return {"ext_words": config.ext_words, "ext_latency": config.ext_latency,
            "ext_words_per_cycle": config.ext_words_per_cycle,
            "ext_rate_cycles": config.ext_rate_cycles,
            "words_per_cycle": config.ext_words_per_cycle / config.ext_rate_cycles,
            "preset": preset_of(config)}
