"""Verilog generation: the accelerator and its configuration, side by side."""

import re
from pathlib import Path

from amaranth.back import verilog

from zeroskip.core import progress
from zeroskip.core.config import AcceleratorConfig, check_generated
from zeroskip.hdl.top import ZeroskipTop

__all__ = ["TOP_NAME", "VERILATOR_WAIVERS", "generate", "memory_map", "verilog_text",
           "write_verilog"]

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
    check_generated(config)
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
    return write_verilog(config, out_dir, verilog_text(config))


def write_verilog(config, out_dir, text):
    """Write ``text`` (the Verilog of ``config``) and the configuration, as :func:`generate`.

    For a caller that already holds the text: nothing is generated.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = out_dir / f"{TOP_NAME}.v"
    config_path = out_dir / f"{TOP_NAME}.config.json"
    for path, content in ((verilog_path, text), (config_path, config.to_json())):
        partial = path.with_name(path.name + ".partial")
        partial.write_text(content)
        partial.replace(path)
    return verilog_path, config_path


_MODULE = re.compile(r"^module (\\\S+ |\w+)\(", re.M)
_MEMORY = re.compile(r"^ *reg (?:\[(\d+):0\] )?(\\\S+ |\w+) \[(\d+):0\];$", re.M)
_RENAMED = re.compile(r"\$\d+$")


def _identifier(name):
    """``name`` as a Verilog identifier (escaped unless it is a plain one)."""
    return name if re.fullmatch(r"[A-Za-z_]\w*", name) else f"\\{name} "


def memory_map(text):
    """The memories of generated Verilog ``text``, by their Amaranth names.

    Amaranth names each module after its place in the hierarchy
    (``zeroskip_top.lane0``) and each instance after its submodule name
    (``lane0``); a memory keeps its submodule name, with a ``$<n>`` suffix
    when a signal of its module has the same name (``bias$147``).

    Returns
    -------
    list of dict
        Per memory: ``name`` (its Amaranth path, ``"lane0.bias"``), ``path``
        (the Verilog identifiers from the top module down, escaped identifiers
        with their backslash and closing space), ``width`` and ``depth``.
    """
    memories = []
    modules = list(_MODULE.finditer(text))
    for module, following in zip(modules, modules[1:] + [None]):
        body = text[module.end():following.start() if following else len(text)]
        hierarchy = module.group(1).strip().lstrip("\\").split(".")[1:]
        for memory in _MEMORY.finditer(body):
            msb, verilog_name, last = memory.groups()
            bare = verilog_name.strip().lstrip("\\")
            memories.append({
                "name": ".".join([*hierarchy, _RENAMED.sub("", bare)]),
                "path": [*(_identifier(part) for part in hierarchy), _identifier(bare)],
                "width": int(msb or 0) + 1,
                "depth": int(last) + 1,
            })
    return memories
