"""The public API: Accelerator.compile / run / matmul, the Result and its error block."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from zeroskip import AcceleratorConfig
from zeroskip.app.api import Accelerator, Result
from zeroskip.app.cli import main
from zeroskip.core.errors import InputError, ProgramMismatchError, ZeroskipError
from zeroskip.firmware.loader import load_matrix
from zeroskip.firmware.program import Program

README = Path(__file__).resolve().parents[1] / "README.md"


def spread(n, nnz, low, high, seed):
    """A random n x n matrix whose magnitudes spread from 10**low to 10**high."""
    rng = np.random.default_rng(seed)
    a = scipy.sparse.random(n, n, density=nnz / n / n, random_state=seed, format="csr")
    a.data = rng.choice([-1.0, 1.0], a.nnz) * 10.0 ** rng.uniform(low, high, a.nnz)
    return a


# The error block, computed by hand -------------------------------------------------------------

HAND_A = np.array([[1.5, 0.3], [0.0, 100.7]])
HAND_X = np.array([1, 2])


def test_error_block_by_hand():
    result = Accelerator(value_width=8, acc_width=32).matmul(HAND_A, HAND_X)
    # Row 1: 1.5 x 2^6 = 96 fits 8 bits, 1.5 x 2^7 does not; 0.3 x 64 = 19.2 -> 19.
    # Row 2: 100.7 x 2^0 -> 101. x is integer: exponent 0.
    assert result.quantization["row_exp"] == [6, 0]
    assert result.quantization["x_exp"] == 0
    assert result.y_raw.tolist() == [96 + 2 * 19, 2 * 101]
    assert result.y.tolist() == [134 / 64, 202.0]
    y = HAND_A @ HAND_X                                     # [2.1, 201.4]
    assert result.error["normwise"] == pytest.approx(0.6 / 201.4)
    assert result.error["max_abs"] == pytest.approx(0.6)
    # |y_i - (A x)_i| / (|A| |x|)_i: 0.00625 / 2.1 and 0.6 / 201.4.
    assert result.error["rowwise_max"] == pytest.approx(max(0.00625 / 2.1, 0.6 / 201.4))
    assert result.error["rows_over_1pct"] == 0
    assert result.error["y_norm"] == pytest.approx(np.abs(y).max())
    q = result.quantization
    assert (q["nnz_input"], q["nnz_stored"], q["dropped"], q["saturated"]) == (3, 3, 0, 0)
    assert result.matches_reference and result.mismatch is None
    assert result.within(1e-2) and not result.within(1e-3)
    assert result.tolerance_message(1e-3) == (
        "normwise error against float64 0.00298 exceeds tolerance 0.001 (0 of 2 rows off by "
        "more than 1 %); the hardware matches the bit-exact reference, so the loss is "
        "quantization: try a wider --value-width")


def test_rows_over_one_percent_and_dropped_values():
    # 1e-4 rounds to 0 beside 1.0 at 8 bits (row exponent 6): dropped, and the
    # second row is then 100 % off.
    a = np.array([[1.0, 0.0], [1.0, 1e-4]])
    x = np.array([0.0, 1.0])
    result = Accelerator(value_width=8).matmul(a, x)
    assert result.quantization["dropped"] == 1
    assert result.quantization["nnz_stored"] == 2
    assert result.y.tolist() == [0.0, 0.0]
    assert result.error["normwise"] == pytest.approx(1.0)
    assert result.error["rowwise_max"] == pytest.approx(1.0)
    assert result.error["rows_over_1pct"] == 1


def test_tolerance_exit_1_although_the_hardware_matches(capsys, tmp_path):
    path = tmp_path / "hand.mtx"
    scipy.io.mmwrite(path, scipy.sparse.coo_matrix(HAND_A))
    np.save(tmp_path / "x.npy", HAND_X)
    out_json = tmp_path / "r.json"
    code = main(["run", str(path), "--x", str(tmp_path / "x.npy"), "--value-width", "8",
                 "--tolerance", "1e-3", "--json", str(out_json)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err == ("zeroskip: error: normwise error against float64 0.00298 exceeds "
                   "--tolerance 0.001 (0 of 2 rows off by more than 1 %); the hardware matches "
                   "the bit-exact reference, so the loss is quantization: try a wider "
                   "--value-width\n")
    assert re.search(r"^matches reference +yes$", out, re.M)
    report = json.loads(out_json.read_text())
    assert report["matches_reference"] is True and report["within_tolerance"] is False
    assert report["error"]["normwise"] == pytest.approx(0.6 / 201.4)
    assert report["quantization"]["row_exp"] == [6, 0]
    assert main(["run", str(path), "--x", str(tmp_path / "x.npy"), "--value-width", "8"]) == 0


# Programs compiled once, run later ------------------------------------------------------------

def test_run_a_saved_program(tmp_path, examples_data):
    accelerator = Accelerator(pes=4)
    a = load_matrix(examples_data / "cage5.mtx")
    program = accelerator.compile(a)
    assert program.quant["worst_case_x"] is True
    program.save(tmp_path / "p.npz")
    loaded = Program.load(tmp_path / "p.npz")
    assert np.array_equal(loaded.row_exp, program.row_exp)
    assert (loaded.source != a).nnz == 0
    x = np.random.default_rng(1).standard_normal(37)
    fresh, later = accelerator.run(program, x), accelerator.run(loaded, x)
    assert np.array_equal(fresh.y_raw, later.y_raw) and np.array_equal(fresh.y, later.y)
    assert later.matches_reference and later.error["normwise"] < 1e-3
    with pytest.raises(ProgramMismatchError):
        Accelerator(pes=2).run(loaded, x)


def test_cli_runs_a_compiled_program(capsys, tmp_path, examples_data):
    program = tmp_path / "cage5.npz"
    assert main(["compile", str(examples_data / "cage5.mtx"), "--pes", "4", "-o",
                 str(program)]) == 0
    x = np.linspace(-3, 3, 37)
    np.save(tmp_path / "x.npy", x)
    out_json = tmp_path / "r.json"
    capsys.readouterr()
    code = main(["run", str(program), "--x", str(tmp_path / "x.npy"), "--json", str(out_json)])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out_json.read_text())
    a = load_matrix(examples_data / "cage5.mtx")
    assert report["pes"] == 4 and report["matrix"] == str(program)
    y = a @ x
    assert np.abs(np.array(report["y"]) - y).max() / np.abs(y).max() == \
        pytest.approx(report["error"]["normwise"])
    assert report["error"]["normwise"] < 1e-3
    # Options that only apply when compiling are refused, a wrong configuration too.
    assert main(["run", str(program), "--format", "csr"]) == 2
    assert capsys.readouterr().err == (f"zeroskip: error: --format applies when compiling a "
                                       f"matrix; {program} is a compiled program\n")
    assert main(["run", str(program), "--pes", "8"]) == 2
    assert capsys.readouterr().err.startswith("zeroskip: error: program was built for pes=4 ")
    np.save(tmp_path / "short.npy", np.ones(5))
    assert main(["run", str(program), "--x", str(tmp_path / "short.npy")]) == 2
    assert capsys.readouterr().err == (f"zeroskip: error: {tmp_path / 'short.npy'}: vector has 5 "
                                       f"entries but the matrix has 37 columns\n")


# Integers stay exact; real matrices stay close ------------------------------------------------

@pytest.mark.parametrize("name", ["jagmesh7", "Erdos971"])
def test_integer_matrices_stay_bit_exact(examples_data, name):
    a = load_matrix(examples_data / f"{name}.mtx")
    x = np.random.default_rng(0).integers(-100, 100, a.shape[1])
    result = Accelerator().matmul(a, x)
    assert result.quantization["exact"] is True
    assert set(result.quantization["row_exp"]) == {0} and result.quantization["x_exp"] == 0
    assert np.array_equal(result.y_raw, (a @ x).astype(np.int64))
    assert np.array_equal(result.y, a @ x)
    assert result.error["normwise"] == 0 and result.matches_reference


@pytest.mark.parametrize("name", ["west0067", "cage5", "494_bus"])
@pytest.mark.parametrize("operand", ["integers", "normal"])
def test_real_suitesparse_samples_within_1e_3(examples_data, name, operand):
    a = load_matrix(examples_data / f"{name}.mtx")
    rng = np.random.default_rng(2)
    x = rng.integers(-8, 8, a.shape[1]) if operand == "integers" else \
        rng.standard_normal(a.shape[1])
    result = Accelerator().matmul(a, x)
    assert result.matches_reference
    assert result.error["normwise"] <= 1e-3
    assert result.quantization["dropped"] == 0


def test_seven_decades_and_huge_values_without_saturate():
    accelerator = Accelerator()
    zenios_like = spread(400, 3000, -3, 4, seed=1)
    west0479_like = spread(300, 1200, -2, np.log10(3e5), seed=2)
    assert abs(west0479_like).max() > 1e5
    for a in (zenios_like, west0479_like):
        x = np.random.default_rng(3).standard_normal(a.shape[1])
        result = accelerator.matmul(a, x)
        assert result.matches_reference
        assert result.error["normwise"] <= 1e-3
        assert result.quantization["saturated"] == 0
    assert result.quantization["row_exp_min"] < 0        # 3e5 needs a negative exponent


def test_worst_case_operand_cannot_overflow():
    # Compiled without x: rows scaled for |x_q| = 2^15 everywhere; the full-scale
    # operand of alternating signs that matches each row's signs still fits.
    a = spread(64, 2000, -1, 1, seed=4)
    accelerator = Accelerator()
    program = accelerator.compile(a)
    assert program.quant["worst_case_x"]
    x = np.sign(np.asarray(a.sum(axis=0)).ravel() + 0.5)
    result = accelerator.run(program, x * 1e3)
    assert result.matches_reference
    assert result.error["normwise"] <= 1e-3


def test_matrix_operand_scales_each_column():
    a = spread(50, 400, -1, 1, seed=5)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((50, 3)) * np.array([1e-3, 1.0, 1e4])
    result = Accelerator(pes=4).matmul(a, x)
    exps = result.quantization["x_exp"]
    assert len(exps) == 3 and exps[0] > exps[1] > exps[2]
    assert result.y.shape == (50, 3) and result.program.kernel == "spmm"
    assert result.error["normwise"] <= 1e-3
    column = Accelerator(pes=4).matmul(a, x[:, 0])
    assert column.error["normwise"] <= 1e-3


def test_result_to_json():
    result = Accelerator(value_width=8).matmul(HAND_A, HAND_X)
    report = json.loads(json.dumps(result.to_json()))
    for key in ("y", "y_raw", "error", "dropped", "saturated", "nnz_input", "nnz_stored",
                "quantization", "cycles", "utilization", "matches_reference", "config"):
        assert key in report, key
    assert report["y"] == result.y.tolist() and report["nnz"] == report["nnz_stored"] == 3
    assert isinstance(result, Result)


def test_run_with_baseline_times_scipy_on_one_core(examples_data):
    from zeroskip.app.nn.infer import board_facts
    from zeroskip.firmware.loader import load_matrix
    matrix = load_matrix(examples_data / "west0067.mtx")
    x = np.arange(matrix.shape[1]) % 7 - 3
    accelerator = Accelerator()
    assert accelerator.matmul(matrix, x).cpu is None          # not unless asked
    result = accelerator.run(accelerator.compile(matrix, x), x, baseline=True)
    cpu = result.cpu
    _, clock_mhz = board_facts()
    assert cpu["clock_mhz"] == clock_mhz
    assert cpu["accelerator_s"] == result.cycles / (clock_mhz * 1e6) > 0
    assert cpu["scipy_csr_1_thread_s"] > 0
    assert cpu["speedup_vs_scipy_csr_1_thread"] == pytest.approx(
        cpu["scipy_csr_1_thread_s"] / cpu["accelerator_s"])
    assert json.loads(json.dumps(result.to_json()))["cpu"] == cpu


# Arguments ------------------------------------------------------------------------------------

def test_argument_errors():
    with pytest.raises(ZeroskipError, match=r"^unknown backend 'spice'; choose one of model, "):
        Accelerator(backend="spice")
    with pytest.raises(TypeError, match=r"^backend 'model' takes no options, not 'port'$"):
        Accelerator(port="/dev/ttyUSB1")
    with pytest.raises(ZeroskipError, match=r"^the board backend needs port="):
        Accelerator(backend="board")
    with pytest.raises(TypeError, match=r"^config must be an AcceleratorConfig or None"):
        Accelerator({"pes": 4})
    assert Accelerator(AcceleratorConfig(pes=2), value_width=8).config == \
        AcceleratorConfig(pes=2, value_width=8)
    accelerator = Accelerator()
    with pytest.raises(InputError, match=r"^vector has 3 entries but the matrix has 2 columns$"):
        accelerator.matmul(HAND_A, np.ones(3))
    with pytest.raises(ZeroskipError, match=r"^matrix value nan at row 2, column 1 is not"):
        accelerator.matmul(np.array([[1.0, 0.0], [np.nan, 1.0]]), np.ones(2))


def test_package_import_stays_light():
    code = ("import sys, zeroskip; assert 'numpy' not in sys.modules; "
            "assert 'zeroskip.app.api' not in sys.modules; "
            "from zeroskip import Accelerator; print(Accelerator.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "zeroskip.app.api"


def test_readme_example_runs(capsys, monkeypatch):
    monkeypatch.chdir(README.parent)
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(block.strip().splitlines()) <= 12
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "normwise error" in out
