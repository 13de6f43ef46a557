"""``zeroskip generate``: the accelerator's Verilog and its configuration."""

import time
from pathlib import Path

from zeroskip.commands.common import (
    add_config_options,
    config_from_args,
    describe_config,
    lazy_import,
    seconds,
)

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
  zeroskip generate --config build/verilog/zeroskip_top.config.json --pes 4 -o build/p4""")


def add_parser(command):
    sub = command("generate", cmd_generate)
    sub.add_argument("-o", "--output", metavar="DIR", type=Path, default=Path("build/verilog"),
                     help="output directory (created if missing; default build/verilog)")
    add_config_options(sub)


def cmd_generate(args):
    config = config_from_args(args)
    generate = lazy_import("zeroskip.hdl.generate").generate
    start = time.monotonic()
    verilog_path, config_path = generate(config, args.output)
    lines = Path(verilog_path).read_text().count("\n")
    print(f"wrote {verilog_path} ({lines} lines, {seconds(start)})")
    print(f"wrote {config_path}")
    print(f"configuration {config.fingerprint}: {describe_config(config)}")
    return 0
