"""``zeroskip generate``: the accelerator's Verilog and its configuration."""

import json
import time
from pathlib import Path

from zeroskip.app.commands.common import (
    add_config_options,
    config_from_args,
    describe_config,
    lazy_import,
    prepare_output,
    seconds,
    write_json,
)
from zeroskip.core.config import check_generated

__all__ = ["HELP", "add_parser", "cmd_generate"]

HELP = (
    "write the accelerator's Verilog and configuration",
    """\
Write the accelerator for a configuration as Verilog (zeroskip_top.v) and
the configuration beside it (zeroskip_top.config.json); give that file to
'compile' and 'run' with --config so programs match the hardware.""",
    """\
examples:
  zeroskip generate -o build/verilog
  zeroskip generate --pes 16 --value-width 8 --acc-width 24 -o build/p16
  zeroskip generate --config build/verilog/zeroskip_top.config.json --pes 4 -o build/p4
  zeroskip generate --board ulx3s-85f -o build/ulx3s   # what 'build --board ulx3s-85f' uses
  zeroskip generate --board icebreaker --json -""")


def add_parser(command):
    sub = command("generate", cmd_generate)
    sub.add_argument("-o", "--output", metavar="DIR", type=Path, default=Path("build/verilog"),
                     help="output directory (created if missing; default build/verilog)")
    sub.add_argument("--board", metavar="NAME",
                     help="start from this board's default configuration, the one 'build "
                          "--board NAME' uses (see 'boards'); the options override it")
    sub.add_argument("--json", metavar="OUT", type=Path,
                     help="also write what was generated as JSON: the files, the "
                          "configuration, its fingerprint and macs_per_cycle ('-': only the "
                          "JSON, on standard output)")
    add_config_options(sub)


def cmd_generate(args):
    base = None
    if args.board is not None:
        base = lazy_import("zeroskip.boards.targets").get_board(args.board).config
    config = config_from_args(args, base=base)
    check_generated(config)
    to_stdout = args.json is not None and str(args.json) == "-"
    if args.json is not None and not to_stdout:
        prepare_output(args.json)
    say = (lambda *a, **k: None) if to_stdout else print
    generate = lazy_import("zeroskip.hdl.generate").generate
    start = time.monotonic()
    verilog_path, config_path = generate(config, args.output)
    lines = Path(verilog_path).read_text().count("\n")
    say(f"wrote {verilog_path} ({lines} lines, {seconds(start)})")
    say(f"wrote {config_path}")
    say(f"configuration {config.fingerprint}: {describe_config(config)}")
    report = {"verilog": str(verilog_path), "config_file": str(config_path),
              "board": args.board, "fingerprint": config.fingerprint,
              "pes": config.pes, "macs_per_cycle": config.macs_per_cycle,
              "config": config.to_dict()}
    if to_stdout:
        print(json.dumps(report, indent=2))
    elif args.json is not None:
        write_json(args.json, report)
        say(f"wrote {args.json}")
    return 0
