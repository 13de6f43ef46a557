"""CPU energy per inference, with the basis of its power figure stated.

Energy on the CPU is its measured time multiplied by a power figure, and the
figure says where it came from:

1. **RAPL**: the package energy counters under ``/sys/class/powercap``
   (``intel-rapl:<n>/energy_uj``; AMD's RAPL driver uses the same names),
   read around the timed loop (:func:`measure`), the counter's wrap-around at
   ``max_energy_range_uj`` handled. The power is the package's: every core,
   the uncore and whatever else runs on the machine during the loop, so a
   one-core figure from it is an upper bound of that core's share.
2. Otherwise a **documented figure for this CPU**: the ``model name`` in
   ``/proc/cpuinfo`` is looked up in :data:`CPU_TABLE` (thermal design power
   and core count from the vendor's specification page); one core is charged
   TDP / cores. That is an estimate: TDP is a thermal budget for all cores
   busy, not a measurement, and it leaves out the uncore's share.
3. A CPU not in the table gets :data:`GENERIC_WATTS_PER_CORE`, the median of
   the table's per-core figures, labelled an estimate.
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time
from pathlib import Path

__all__ = ["POWERCAP", "CPU_TABLE", "GENERIC_WATTS_PER_CORE", "rapl_zones", "read_counters",
           "counter_delta", "measure", "cpu_model", "table_power", "power_basis",
           "energy_nj"]

POWERCAP = Path("/sys/class/powercap")
CPUINFO = Path("/proc/cpuinfo")

_PACKAGE = re.compile(r"^intel-rapl:\d+$")

_AMD = "AMD product specifications, amd.com/en/products/specifications (default TDP)"
_INTEL = "Intel ARK product specifications, ark.intel.com"
_INTEL_PBP = "Intel ARK product specifications, ark.intel.com (processor base power)"

#: ``(pattern in the model name, label, TDP in W, cores, source)``.
CPU_TABLE = (
    (r"EPYC 9654\b", "AMD EPYC 9654", 360.0, 96, _AMD),
    (r"EPYC 9554\b", "AMD EPYC 9554", 360.0, 64, _AMD),
    (r"EPYC 7763\b", "AMD EPYC 7763", 280.0, 64, _AMD),
    (r"EPYC 7742\b", "AMD EPYC 7742", 225.0, 64, _AMD),
    (r"EPYC 7543\b", "AMD EPYC 7543", 225.0, 32, _AMD),
    (r"EPYC 7302\b", "AMD EPYC 7302", 155.0, 16, _AMD),
    (r"Ryzen 9 7950X\b", "AMD Ryzen 9 7950X", 170.0, 16, _AMD),
    (r"Ryzen 9 5950X\b", "AMD Ryzen 9 5950X", 105.0, 16, _AMD),
    (r"Ryzen 7 5800X\b", "AMD Ryzen 7 5800X", 105.0, 8, _AMD),
    (r"Xeon\(R\) Platinum 8480\+", "Intel Xeon Platinum 8480+", 350.0, 56, _INTEL),
    (r"Xeon\(R\) Platinum 8380\b", "Intel Xeon Platinum 8380", 270.0, 40, _INTEL),
    (r"Xeon\(R\) Gold 6248\b", "Intel Xeon Gold 6248", 150.0, 20, _INTEL),
    (r"Xeon\(R\) Gold 6230\b", "Intel Xeon Gold 6230", 125.0, 20, _INTEL),
    (r"Xeon\(R\) CPU E5-2690 v4\b", "Intel Xeon E5-2690 v4", 135.0, 14, _INTEL),
    (r"Core\(TM\) i9-13900K\b", "Intel Core i9-13900K", 125.0, 24, _INTEL_PBP),
    (r"Core\(TM\) i7-12700K\b", "Intel Core i7-12700K", 125.0, 12, _INTEL_PBP),
)

#: Watts charged to one core of a CPU not in :data:`CPU_TABLE` (an estimate).
GENERIC_WATTS_PER_CORE = statistics.median(tdp / cores for _, _, tdp, cores, _ in CPU_TABLE)


# RAPL ---------------------------------------------------------------------------------------------

def rapl_zones(root=POWERCAP):
    """The package zones (``intel-rapl:<n>``) whose counters can be read: ``[(name, dir)]``."""
    root = Path(root)
    try:
        candidates = sorted(p for p in root.iterdir() if _PACKAGE.match(p.name))
    except OSError:
        return []
    zones = []
    for path in candidates:
        try:
            int((path / "energy_uj").read_text())
            int((path / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            continue
        try:
            name = (path / "name").read_text().strip()
        except OSError:
            name = path.name
        zones.append((name, path))
    return zones


def read_counters(zones):
    """``{dir: (energy_uj, max_energy_range_uj)}`` for each zone."""
    return {path: (int((path / "energy_uj").read_text()),
                   int((path / "max_energy_range_uj").read_text())) for _, path in zones}


def counter_delta(start, end, max_range):
    """Microjoules between two readings of a counter that wraps at ``max_range``."""
    if end >= start:
        return end - start
    return max_range - start + end


class _Measurement:
    result = None


@contextlib.contextmanager
def measure(root=POWERCAP, *, enabled=True):
    """Read the package energy around the body; ``.result`` is then set (or stays None).

    ``.result`` is ``{"joules", "seconds", "watts", "zones"}``, summed over
    the packages, when every counter could be read at both ends.
    """
    reading = _Measurement()
    zones = rapl_zones(root) if enabled else []
    try:
        before = read_counters(zones) if zones else None
    except (OSError, ValueError):
        before = None
    start = time.perf_counter()
    yield reading
    seconds = time.perf_counter() - start
    if before is None:
        return
    try:
        after = read_counters(zones)
    except (OSError, ValueError):
        return
    micro = sum(counter_delta(before[path][0], after[path][0], after[path][1])
                for path in before)
    reading.result = {"joules": micro * 1e-6, "seconds": seconds,
                      "watts": micro * 1e-6 / seconds if seconds > 0 else None,
                      "zones": [name for name, _ in zones]}


# The documented figure ----------------------------------------------------------------------------

def cpu_model(path=CPUINFO):
    """The first ``model name`` in ``/proc/cpuinfo`` (None when it cannot be read)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return None


def table_power(model):
    """One core's watts for a CPU ``model`` name.

    Returns ``{"watts", "basis", "estimate", "source", "cpu"}``; ``source`` is
    ``"table"`` for a CPU of :data:`CPU_TABLE`, ``"generic"`` otherwise.
    """
    for pattern, label, tdp, cores, source in CPU_TABLE:
        if model and re.search(pattern, model):
            return {"watts": tdp / cores, "cpu": model, "estimate": True, "source": "table",
                    "basis": f"{label}: TDP {tdp:g} W / {cores} cores = {tdp / cores:.2f} W "
                             f"per core ({source}); an estimate from a thermal budget, not "
                             f"a measurement"}
    return {"watts": GENERIC_WATTS_PER_CORE, "cpu": model, "estimate": True, "source": "generic",
            "basis": f"generic estimate for a CPU not in zeroskip.app.cpu_energy.CPU_TABLE "
                     f"({model or 'model unknown'}): {GENERIC_WATTS_PER_CORE:.2f} W per core, "
                     f"the median TDP / cores of the table's CPUs"}


def power_basis(rapl=None, *, model=None):
    """The power one CPU measurement is charged: ``{"watts", "basis", "estimate", "source"}``.

    ``rapl`` is :func:`measure`'s result for that measurement's timed loop.
    """
    if rapl is not None and rapl.get("watts"):
        return {"watts": rapl["watts"], "estimate": False, "source": "rapl",
                "basis": f"RAPL package energy counters ({', '.join(rapl['zones'])}) read "
                         f"around the timed loop: {rapl['watts']:.2f} W over "
                         f"{rapl['seconds']:.3f} s (whole package: all cores and uncore)"}
    return table_power(model if model is not None else cpu_model())


def energy_nj(seconds, watts):
    """Nanojoules of ``seconds`` at ``watts``."""
    return seconds * watts * 1e9
