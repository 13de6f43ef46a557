"""Verilog generation: the accelerator and its configuration, side by side."""

from pathlib import Path

from amaranth.back import verilog

from zeroskip import progress
from zeroskip.config import AcceleratorConfig
from zeroskip.hdl.top import ZeroskipTop

__all__ = ["TOP_NAME", "VERILATOR_WAIVERS", "generate", "verilog_text"]

#: Module name of the generated top level (and stem of the output files).
TOP_NAME = "zeroskip_top"

#: The documented Verilator lint waivers for the generated Verilog. Amaranth
#: extends and truncates operands implicitly (WIDTHEXPAND, WIDTHTRUNC), and
#: emits ``casez`` over state and enum values without a ``default`` branch,
#: each after a default assignment (CASEINCOMPLETE). Everything else is clean.
VERILATOR_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE")


def verilog_text(config):
    """Return the Verilog of the accelerator for ``config`` as a string."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"Config must be an AcceleratorConfig, not {config!r}")
    with progress.task(f"generating Verilog ({config.pes} PEs)") as step:
        step.phase("elaborating")
        top = ZeroskipTop(config)
        # Amaranth elaborates the design, then Yosys writes the Verilog: one
        # call, several seconds for large configurations.
        step.phase("elaborating and converting (Amaranth, Yosys)")
        return verilog.convert(top, name=TOP_NAME, emit_src=False)


def generate(config, out_dir):
    """Write ``zeroskip_top.v`` and ``zeroskip_top.config.json`` into ``out_dir``.

    Both files are written to temporary names first and renamed, so an
    interrupted run never leaves a half-written Verilog file behind.

    Parameters
    ----------
    config : AcceleratorConfig
    out_dir : str or Path
        Created if missing.

    Returns
    -------
    tuple of Path
        The Verilog file and the configuration file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog_text(config)
    verilog_path = out_dir / f"{TOP_NAME}.v"
    config_path = out_dir / f"{TOP_NAME}.config.json"
    for path, content in ((verilog_path, text), (config_path, config.to_json())):
        partial = path.with_name(path.name + ".partial")
        partial.write_text(content)
        partial.replace(path)
    return verilog_path, config_path
