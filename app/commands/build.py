"""``zeroskip build``: a bitstream for a board, with its timing and resource report."""

import json
from pathlib import Path

from zeroskip.app.commands.common import (
    CONFIG_DESTS,
    add_config_options,
    config_from_args,
    describe_config,
    lazy_import,
    prepare_output,
    write_json,
)

__all__ = ["HELP", "add_parser", "cmd_build"]

HELP = (
    "build a bitstream for a board, with timing and resource report",
    """\
Synthesize, place and route the accelerator with its UART bridge for a board
(Yosys, nextpnr and the packer from YoWASP, through amaranth-boards) and print
Fmax and resource use. Fails when the design does not fit the device or misses
the clock. Writes under build/boards/<board>/.""",
    """\
examples:
  zeroskip build --board icebreaker
  zeroskip build --board ulx3s --pes 16 --clock 100 --json build/ulx3s.json
  zeroskip build --board icebreaker --program""")


def add_parser(command):
    sub = command("build", cmd_build)
    sub.add_argument("--board", required=True, metavar="NAME", help="target board (see 'boards')")
    sub.add_argument("--clock", metavar="MHZ", type=float,
                     help="clock frequency to meet (default: the board's, below)")
    sub.add_argument("--json", metavar="OUT", type=Path,
                     help="also write the report as JSON ('-': only the JSON, on standard "
                          "output)")
    sub.add_argument("--program", action="store_true",
                     help="load the bitstream onto the connected board when the build succeeds")
    add_config_options(sub)
    _board_defaults_help(sub)


def _board_defaults_help(parser):
    """Make ``build --help`` show the defaults a board build really uses."""
    targets = lazy_import("zeroskip.boards.targets")
    for action in parser._actions:
        if action.dest in CONFIG_DESTS and action.help:
            action.help = action.help.split(" (default")[0] + " (default: the board's, below)"
        elif action.dest == "config":
            action.help = "configuration JSON file (instead of the board's defaults)"
    parser.epilog = (
        "defaults per board (each option overrides one; --config FILE replaces them all):\n  "
        + "\n  ".join(targets.defaults_table()) + "\n\n" + parser.epilog)


def cmd_build(args):
    build = lazy_import("zeroskip.boards.build")
    targets = lazy_import("zeroskip.boards.targets")
    # Start from the board's own sizing (what fits it) unless a file is given.
    config = config_from_args(args, base=targets.get_board(args.board).config)
    to_stdout = args.json is not None and str(args.json) == "-"
    say = (lambda *a, **k: None) if to_stdout else print
    if args.json is not None and not to_stdout:
        prepare_output(args.json)
    say(f"building {args.board}: {describe_config(config)} (Yosys, nextpnr and the packer; "
        f"this takes minutes)", flush=True)
    report = build.build(args.board, config=config, clock_mhz=args.clock, program=args.program)
    say(report.summary())
    say(f"  config    {report.build_dir / build.CONFIG_FILE} (compile --config targets this "
        f"bitstream)")
    if to_stdout:
        print(json.dumps(report.to_dict(), indent=2))
    elif args.json is not None:
        write_json(args.json, report.to_dict())
        say(f"wrote {args.json}")
