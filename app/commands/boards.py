"""``zeroskip boards``: the FPGA boards zeroskip builds for."""

from zeroskip.app.commands.common import lazy_import

__all__ = ["HELP", "add_parser", "cmd_boards"]

HELP = (
    "list the FPGA boards zeroskip builds for",
    "List the board targets: default clock, default accelerator size and host link.",
    """\
example:
  zeroskip boards""")


def add_parser(command):
    command("boards", cmd_boards)


def cmd_boards(args):
    build = lazy_import("zeroskip.boards.build")
    print(f"{'board':<12} {'clock':>9} {'PEs':>4}  {'device':<32} host link")
    for name, title, clock, pes, link in build.list_boards():
        print(f"{name:<12} {clock:>5.0f} MHz {pes:>4}  {title:<32} {link}")
