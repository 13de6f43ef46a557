"""``zeroskip disasm``: the listing of a compiled program."""

from zeroskip.app.commands.common import print_text
from zeroskip.app.commands.matrix import load_program

__all__ = ["HELP", "add_parser", "cmd_disasm"]

HELP = (
    "print the listing of a compiled program",
    """\
Print a compiled program: its configuration, quantization and, per tile,
the disassembled microcode and memory images.""",
    """\
examples:
  zeroskip disasm build/cage5.program.npz
  zeroskip disasm build/cage5.program.npz | less""")


def add_parser(command):
    sub = command("disasm", cmd_disasm)
    sub.add_argument("program", metavar="PROGRAM.npz", help="a program written by 'compile'")


def cmd_disasm(args):
    print_text(load_program(args.program).listing())
    return 0
