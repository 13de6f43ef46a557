"""``zeroskip program``: load a built bitstream onto a connected board."""

from pathlib import Path

from zeroskip.app.commands.common import lazy_import

__all__ = ["HELP", "add_parser", "cmd_program"]

HELP = (
    "load a built bitstream onto a connected board",
    "Program the board with openFPGALoader (the bitstream 'build' wrote, by default).",
    """\
examples:
  zeroskip program --board icebreaker
  zeroskip program --board ulx3s --bitstream build/boards/ulx3s-85f/top.bit --flash""")


def add_parser(command):
    sub = command("program", cmd_program)
    sub.add_argument("--board", required=True, metavar="NAME", help="target board (see 'boards')")
    sub.add_argument("--bitstream", metavar="FILE", type=Path,
                     help="bitstream to load (default: the one 'build' wrote for the board)")
    sub.add_argument("--flash", action="store_true",
                     help="write the configuration flash instead of the FPGA's SRAM (ECP5)")


def cmd_program(args):
    build = lazy_import("zeroskip.boards.build")
    bitstream = args.bitstream or build.default_bitstream(args.board)
    build.program(args.board, bitstream, flash=args.flash)
    print(f"programmed {args.board} with {bitstream}")
