"""What several commands share: configuration options, output files, the accelerator, errors.

Every command imports the heavy parts (Amaranth, the compiler, the
simulators) only when it runs, through :func:`lazy_import`.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from zeroskip.app.api import FORMATS, lazy_import
from zeroskip.core import progress
from zeroskip.core.config import AcceleratorConfig, ConfigError
from zeroskip.core.errors import InputError, ZeroskipError

__all__ = ["PROG", "Mismatch", "CONFIG_OPTIONS", "CONFIG_DESTS", "SIMULATOR_TOOLS",
           "lazy_import", "add_config_options", "config_overrides", "config_from_args",
           "describe_config", "pes", "tiles", "seconds", "print_text", "prepare_output",
           "atomic_write", "write_json", "check_board_options", "make_accelerator",
           "tty_progress", "find_tool", "print_error", "EXT_OPTIONS", "add_ext_options",
           "check_stream_option"]

PROG = "zeroskip"

#: Configuration options shared by generate, compile, explain, run and build: (field, help).
CONFIG_OPTIONS = (
    ("pes", "processing elements (lanes), 1 to 64"),
    ("value_width", "bits of a stored matrix or vector value: 8 or 16"),
    ("acc_width", "bits of an accumulator, 2 x value width to 32"),
    ("x_depth", "entries of the input-vector buffer (power of two)"),
    ("x_banks", "banks of each copy of the input vector (power of two; 0 = 1 for private "
                "copies, else 2 x cluster lanes rounded up)"),
    ("cluster_lanes", "lanes sharing one copy of the input vector (a divisor of --pes; "
                      "1 = every lane has its own)"),
    ("nz_depth", "nonzeros each lane holds (power of two)"),
    ("row_depth", "rows each lane holds (power of two)"),
    ("imem_depth", "instructions the instruction memory holds (power of two)"),
    ("products_per_lane", "products each lane issues per cycle, on k inputs of a batch: "
                          "1, 2, 4 or 8 (above 1 the ISA model only, a projection)"),
)
#: The external memory's options (the ISA model only): (field, help).
EXT_OPTIONS = (
    ("ext_words", "32-bit words of the external memory LOAD copies lane images from: 0 "
                  "(none) or a power of two from 1024 to 2^26"),
    ("ext_latency", "cycles from a LOAD's request to its first word, 0 to 1024"),
    ("ext_words_per_cycle", "words the external memory delivers every --ext-rate-cycles "
                            "cycles: 1, 2, 4 or 8"),
    ("ext_rate_cycles", "cycles the external memory takes for --ext-words-per-cycle words, "
                        "1 to 64 (the rate is their ratio)"),
)
#: The destinations of every configuration option (--config aside).
CONFIG_DESTS = tuple(name for name, _ in CONFIG_OPTIONS + EXT_OPTIONS) + \
    ("formats", "reduce", "move")

#: The program each cocotb backend runs.
SIMULATOR_TOOLS = {"icarus": "iverilog", "verilator": "verilator"}


class Mismatch(Exception):
    """A result that differs from the reference (exit code 1)."""


# The configuration options ------------------------------------------------------------------------

def add_config_options(parser):
    """Add --config FILE and one option per configuration field to ``parser``."""
    defaults = {field.name: field.default for field in dataclasses.fields(AcceleratorConfig)}
    group = parser.add_argument_group(
        "accelerator configuration",
        "Start from --config FILE (the .config.json written by 'zeroskip generate')\n"
        "or from the defaults shown; every option given overrides it.")
    group.add_argument("--config", metavar="FILE", type=Path,
                       help="configuration JSON file")
    for name, text in CONFIG_OPTIONS:
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=int, metavar="N",
                           help=f"{text} (default {defaults[name]})")
    group.add_argument("--formats", metavar="LIST", type=_format_list,
                       help=f"storage formats the hardware decodes, comma-separated, from "
                            f"{', '.join(FORMATS[1:])} (default {','.join(defaults['formats'])})")
    group.add_argument("--reduce", action=argparse.BooleanOptionalAction, default=None,
                       help="generate the scatter/reduce network, so that long rows can be "
                            "split across lanes (default on)")
    group.add_argument("--move", action=argparse.BooleanOptionalAction, default=None,
                       help="generate the move engine (MOVE), so that a network's layers "
                            "chain on chip (default on)")
    add_ext_options(group)


def add_ext_options(group):
    """Add the external memory's options (:data:`EXT_OPTIONS`, ``--ext-memory``) to ``group``."""
    from zeroskip.core.extmem import EXT_PRESETS
    defaults = {field.name: field.default for field in dataclasses.fields(AcceleratorConfig)}
    group.add_argument("--ext-memory", metavar="PRESET",
                       help=f"a named external memory, an estimate of a board's SDRAM "
                            f"(zeroskip.core.extmem): {', '.join(EXT_PRESETS)}; the --ext-* "
                            f"options given override it")
    for name, text in EXT_OPTIONS:
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=int, metavar="N",
                           help=f"{text} (default {defaults[name]}; the ISA model only)")


def check_stream_option(args, config):
    """Refuse ``--stream`` without an external memory (an :class:`InputError`)."""
    if getattr(args, "stream", False) and not config.ext_words:
        from zeroskip.core.extmem import EXT_PRESETS
        raise InputError(f"--stream needs an external memory: --ext-memory "
                         f"{next(iter(EXT_PRESETS))} or --ext-words N")

def _format_list(text):
    names = tuple(name.strip().lower() for name in text.split(",") if name.strip())
    return names or (text,)


def config_overrides(args):
    """The configuration options given on the command line, ``{field: value}``:
    ``--ext-memory``'s fields, then every option given (the ``--ext-*`` options
    override the preset's).

    Raises
    ------
    InputError
        ``"--ext-memory NAME: unknown external memory 'NAME'; known: ..."``.
    """
    overrides = {}
    preset = getattr(args, "ext_memory", None)
    if preset is not None:
        from zeroskip.core.extmem import ext_preset
        try:
            overrides.update(ext_preset(preset).fields())
        except ConfigError as error:
            raise InputError(f"--ext-memory {preset}: {error}") from None
    overrides.update({name: getattr(args, name) for name in CONFIG_DESTS
                      if getattr(args, name, None) is not None})
    return overrides


def config_from_args(args, *, base=None):
    """The configuration: --config FILE (else ``base``, else the defaults) with the options.

    An error names the option (``--value-width``) or the file it comes from.
    """
    overrides = config_overrides(args)
    config_file = getattr(args, "config", None)
    try:
        if config_file is not None:
            return AcceleratorConfig.load(config_file, **overrides)
        if base is not None:
            return base.replace(**overrides) if overrides else base
        return AcceleratorConfig(**overrides)
    except ConfigError as error:
        raise _option_error(error, overrides, config_file) from None


def _option_error(error, overrides, config_file):
    """Name the option (``--value-width``) or the file a configuration error comes from."""
    parameter = getattr(error, "parameter", None)
    if parameter is None or getattr(error, "detail", None) is None:
        return error
    sep = getattr(error, "sep", None) or " "
    if parameter in overrides:
        return ConfigError(f"--{parameter.replace('_', '-')}{sep}{error.detail}")
    if config_file is not None and not str(error).startswith(f"{config_file}:"):
        return ConfigError(f"{config_file}: {parameter}{sep}{error.detail}")
    return error


# What the commands print --------------------------------------------------------------------------

def describe_config(config):
    products = "" if config.products_per_lane == 1 else \
        f" x {config.products_per_lane} products ({config.macs_per_cycle} MACs per cycle)"
    return (f"{pes(config)}{products}, {config.value_width}-bit values, {config.acc_width}-bit "
            f"accumulators, x buffer of {config.x_depth} in {config.x_banks} banks, "
            f"{config.nz_depth} nonzeros and {config.row_depth} rows per lane, "
            f"{config.imem_depth} instructions")


def pes(config):
    return f"{config.pes} PE" + ("" if config.pes == 1 else "s")


def tiles(program):
    count = len(getattr(program, "tiles", ()))
    return f"{count} tile" + ("" if count == 1 else "s")


def seconds(start):
    return f"{time.monotonic() - start:.1f} s"


def print_text(text):
    print(text, end="" if text.endswith("\n") else "\n")


def print_error(message):
    """``zeroskip: error: ...`` on standard error, details indented on the lines below."""
    lines = str(message).splitlines() or [""]
    print(f"{PROG}: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:   # details (e.g. a simulator log), indented under the error
        print(f"  {line}", file=sys.stderr)


# Output files -------------------------------------------------------------------------------------

def prepare_output(path):
    """Create the directory of an output file early, before any long work."""
    path = Path(path)
    if path.is_dir():
        raise OSError(21, "Is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path, write):
    """Call ``write(temp_path)`` and rename the result to ``path``.

    The temporary file lives next to ``path`` and keeps its suffix (NumPy
    appends ``.npz`` otherwise); it is removed if anything fails, so a
    half-written output never remains.
    """
    path = prepare_output(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                suffix=".partial" + "".join(path.suffixes[-1:]))
    os.close(fd)
    try:
        write(temp)
        os.chmod(temp, 0o666 & ~_umask())   # mkstemp makes it private; outputs are not
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return path


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path, data, *, indent=2):
    """Write ``data`` as JSON to ``path`` atomically (see :func:`atomic_write`)."""
    def write(temp):
        with open(temp, "w") as file:
            json.dump(data, file, indent=indent)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
    return atomic_write(path, write)


# The accelerator and the tools --------------------------------------------------------------------

#: What a command says when ``--backend board`` comes without ``--port``.
NEEDS_PORT = "--backend board needs --port (the board's serial device, e.g. /dev/ttyUSB1)"


def check_board_options(backend, port, baudrate=None):
    """Refuse ``--port`` and ``--baudrate`` off the board backend, and the board
    backend without ``--port`` (an :class:`InputError`, before any work)."""
    if backend == "board":
        if port is None:
            raise InputError(NEEDS_PORT)
        if baudrate is not None and baudrate <= 0:
            raise InputError(f"--baudrate must be a positive number of bits per second, "
                             f"not {baudrate}")
        return
    for option, value in (("--port", port), ("--baudrate", baudrate)):
        if value is not None:
            raise InputError(f"{option} applies to --backend board only, not {backend}")


def make_accelerator(config, backend="model", *, waves=False, port=None):
    """The :class:`~zeroskip.app.api.Accelerator` a command runs on."""
    api = lazy_import("zeroskip.app.api")
    options = {}
    if backend == "board":
        if port is None:
            raise ZeroskipError(NEEDS_PORT)
        options["port"] = port
    elif backend != "model" and waves:
        options["waves"] = True
    return api.Accelerator(config, backend=backend, progress=tty_progress(), **options)


def tty_progress():
    """A ``progress(done, total)`` callback showing the tiles as they run
    (:mod:`zeroskip.core.progress`)."""
    return progress.tracker("running tiles")


def find_tool(name):
    """Whether ``name`` is installed; one beside this Python is put on PATH."""
    from zeroskip.core.tools import find_tool as find
    return find(name, add_to_path=True) is not None
