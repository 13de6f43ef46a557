"""--products-per-lane on the command line, generate --board and macs_per_cycle."""

import json
from pathlib import Path

import pytest

from zeroskip import AcceleratorConfig
from zeroskip.app.cli import build_parser, main
from zeroskip.app.commands.common import config_from_args
from zeroskip.boards.build import BuildReport
from zeroskip.boards.targets import get_board

MATRIX = Path(__file__).resolve().parents[2] / "app" / "data" / "west0067.mtx"
REFUSAL = ("zeroskip: error: products_per_lane {k}: the generated hardware issues one product "
           "per lane per cycle; only the ISA model runs products_per_lane > 1\n")


def _run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["generate", "compile", "explain", "run", "build"])
def test_every_configuration_option_list_takes_it(command):
    argv = [command] + (["a.mtx"] if command in ("compile", "explain", "run") else []) \
        + (["--board", "icebreaker"] if command == "build" else [])
    args = build_parser().parse_args(argv + ["--products-per-lane", "4"])
    assert config_from_args(args).products_per_lane == 4


def test_a_bad_value_names_the_option(capsys):
    code, _, err = _run(capsys, "compile", "a.mtx", "--products-per-lane", "3")
    assert code == 2
    assert err == "zeroskip: error: --products-per-lane must be 1, 2, 4 or 8, not 3\n"


def test_generate_refuses_k_above_1_before_writing(capsys, tmp_path):
    code, out, err = _run(capsys, "generate", "--products-per-lane", "2", "-o", tmp_path / "v")
    assert code == 2
    assert err == REFUSAL.format(k=2)
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("backend", ["pysim", "icarus", "verilator"])
def test_run_refuses_k_above_1_on_the_simulators(capsys, backend):
    code, _, err = _run(capsys, "run", MATRIX, "--backend", backend, "--products-per-lane", "4")
    assert code == 2
    assert err == REFUSAL.format(k=4)


def test_run_on_the_model_is_bit_exact_at_k_above_1(capsys, tmp_path):
    cycles = {}
    for k in (1, 4):
        out = tmp_path / f"run{k}.json"
        code, _, err = _run(capsys, "run", MATRIX, "--products-per-lane", k, "--json", out)
        assert code == 0, err
        report = json.loads(out.read_text())
        assert report["matches_reference"] is True
        assert 0 < report["utilization"] <= 1
        cycles[k] = report["cycles"]
    assert cycles[4] == cycles[1]       # a vector: one input, one pass either way


@pytest.mark.parametrize("board", ["ulx3s-85f", "icebreaker"])
def test_generate_board_writes_the_boards_default_configuration(capsys, tmp_path, board):
    out = tmp_path / "v"
    code, stdout, err = _run(capsys, "generate", "--board", board, "-o", out, "--json", "-")
    assert code == 0, err
    report = json.loads(stdout)
    default = get_board(board).config
    written = out / "zeroskip_top.config.json"
    assert written.read_text() == default.to_json()
    assert AcceleratorConfig.load(written) == default
    assert report["config"] == default.to_dict()
    assert report["macs_per_cycle"] == default.macs_per_cycle == default.pes
    assert report["fingerprint"] == default.fingerprint
    assert report["board"] == get_board(board).name


def test_generate_board_options_override_it(capsys, tmp_path, monkeypatch):
    import zeroskip.hdl.generate as generate
    monkeypatch.setattr(generate, "verilog_text", lambda config: "module zeroskip_top;\n")
    code, _, err = _run(capsys, "generate", "--board", "icebreaker", "--pes", "1",
                        "-o", tmp_path)
    assert code == 0, err
    assert AcceleratorConfig.load(tmp_path / "zeroskip_top.config.json") == \
        get_board("icebreaker").config.replace(pes=1)
    code, _, err = _run(capsys, "generate", "--board", "nosuchboard", "-o", tmp_path)
    assert code == 2 and "nosuchboard" in err and len(err.splitlines()) == 1


def test_build_json_carries_macs_per_cycle():
    config = get_board("ulx3s-85f").config
    report = BuildReport(board="ulx3s-85f", device="LFE5U-85F", pes=config.pes,
                         config=config.to_dict(), target_mhz=50.0, clock_mhz=50.0,
                         fmax_mhz=60.0, resources={}, critical_path=[], bitstream=Path("b"),
                         build_dir=Path("d"), seconds=1.0)
    assert report.to_dict()["macs_per_cycle"] == 8
