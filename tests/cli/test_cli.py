"""The zeroskip command: help, exit codes, one-line errors, outputs.

The compiler, the reference and the backends are replaced by small fakes
(monkeypatched into ``sys.modules``) so these tests exercise the command
itself and stay fast; ``test_run_model_end_to_end`` uses the real ones.
"""

import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from zeroskip import AcceleratorConfig
from zeroskip.app import demo as demo_module  # imported before any fake replaces what it imports
from zeroskip.app.cli import build_parser, main
from zeroskip.core.errors import DeviceError
from zeroskip.sim.backends import BACKENDS

COMMANDS = ["generate", "compile", "disasm", "explain", "run", "demo"]


def run_main(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err, message=None):
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zeroskip: error: ")
    if message is not None:
        assert lines[0] == f"zeroskip: error: {message}"


def parse_table(out):
    """The ``label  value`` lines of run's table, as a dictionary."""
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines()
                if re.search(r"\S\s{2,}\S", line))


def write_mtx(path, dense, field="integer"):
    dense = np.asarray(dense)
    entries = [(i + 1, j + 1, dense[i, j]) for j in range(dense.shape[1])
               for i in range(dense.shape[0]) if dense[i, j]]
    lines = [f"%%MatrixMarket matrix coordinate {field} general",
             f"{dense.shape[0]} {dense.shape[1]} {len(entries)}"]
    lines += [f"{i} {j} {v}" for i, j, v in entries]
    path.write_text("\n".join(lines) + "\n")
    return path


# Fakes of the modules the CLI drives ----------------------------------------------------------

@dataclasses.dataclass
class FakeResult:
    y_raw: np.ndarray
    counters: dict
    backend: str = ""


class FakeProgram:
    def __init__(self, matrix_int, config, a_frac_bits=0, x_frac_bits=0, name="matrix",
                 kernel="spmv", fmt="csr"):
        self.matrix_int = matrix_int
        self.config = config
        self.shape = matrix_int.shape
        self.nnz = matrix_int.nnz
        self.tiles = [object()]
        self.a_frac_bits = a_frac_bits
        self.x_frac_bits = x_frac_bits
        self.name = name
        self.kernel = "spmv" if kernel == "auto" else kernel
        self.format_label = "csr" if fmt == "auto" else fmt
        self.dataflow_label = "column" if fmt == "csc" else "row"
        self.dense_cycles = 400
        self.report = {"balance": {"split": False}}

    def predicted_cycles(self, x=None):
        return 40

    def lane_balance(self):
        return {"lane_work": [2, 2], "balance": 1.0,
                "tiles": [{"tile": 0, "lane_work": [2, 2], "balance": 1.0, "spmvs": []}]}

    @property
    def y_frac_bits(self):
        return self.a_frac_bits + self.x_frac_bits

    def listing(self):
        return f"program {self.name!r}: fake listing\n"

    def save(self, path):
        with open(path, "wb") as file:
            file.write(b"fake program " + self.name.encode())

    @classmethod
    def load(cls, path):
        with open(path, "rb") as file:
            name = file.read().decode().removeprefix("fake program ")
        return cls(scipy.sparse.csr_matrix((1, 1), dtype=np.int64), AcceleratorConfig(),
                   name=name)


class Fakes:
    """Installs fake compiler, reference, backends, generator and program modules."""

    def __init__(self, monkeypatch):
        self.calls = []
        self.corrupt = False          # the backend returns a wrong row 0
        self.overflow = False         # the reference reports an overflow
        self.backend_error = None     # the backend raises this
        self.save_error = None        # Program.save raises this
        fakes = self

        def compile_kernel(matrix_int, config, *, a_frac_bits=0, x_frac_bits=0, name="matrix",
                           kernel="auto", fmt="auto", **kwargs):
            fakes.calls.append(("compile", name, a_frac_bits, x_frac_bits, config))
            fakes.compile_options = dict(kernel=kernel, fmt=fmt, **kwargs)
            program = FakeProgram(matrix_int, config, a_frac_bits, x_frac_bits, name, kernel,
                                  fmt)
            if fakes.save_error is not None:
                def failing_save(path):
                    with open(path, "wb") as file:
                        file.write(b"half")
                    raise fakes.save_error
                program.save = failing_save
            return program

        def spmv_reference(matrix_int, x_int, *, config):
            y = np.asarray(matrix_int @ x_int, dtype=np.int64)
            return (y.reshape(-1) if np.ndim(x_int) == 1 else y), fakes.overflow

        def run(program, x_int, *, backend, waves=False, progress=None):
            fakes.calls.append(("run", backend, np.array(x_int)))
            if fakes.backend_error is not None:
                raise fakes.backend_error
            y = np.asarray(program.matrix_int @ x_int, dtype=np.int64)
            if np.ndim(x_int) == 1:
                y = y.reshape(-1)
            if fakes.corrupt:
                y[0] += 1
            pes = program.config.pes
            busy = [program.nnz // pes + (p < program.nnz % pes) for p in range(pes)]
            counters = {"cycles": 40, "insns": 3, "macs": program.nnz, "skipped": 2,
                        "gather_stalls": 5, "pe_busy": busy}
            return FakeResult(y, counters, backend)

        def generate(config, out_dir):
            fakes.calls.append(("generate", config, out_dir))
            os.makedirs(out_dir, exist_ok=True)
            verilog = os.path.join(out_dir, "zeroskip_top.v")
            config_path = os.path.join(out_dir, "zeroskip_top.config.json")
            with open(verilog, "w") as file:
                file.write("module zeroskip_top;\nendmodule\n")
            config.save(config_path)
            return verilog, config_path

        modules = {
            "zeroskip.firmware.compiler": {"compile_kernel": compile_kernel},
            "zeroskip.firmware.reference": {"spmv_reference": spmv_reference},
            "zeroskip.sim.backends": {"run": run, "BACKENDS": BACKENDS},
            "zeroskip.hdl.generate": {"generate": generate},
            "zeroskip.firmware.program": {"Program": FakeProgram},
        }
        for name, attributes in modules.items():
            module = types.ModuleType(name)
            module.__dict__.update(attributes)
            monkeypatch.setitem(sys.modules, name, module)

        def count_program(program):
            """A fake program has no tiles to drive: its matrix, x and y words."""
            moved = transfers.Transfers()
            moved.add("weights", "write", program.nnz)
            moved.add("inputs", "write", program.shape[1])
            moved.add("results", "read", program.shape[0])
            return moved

        from zeroskip.app import transfers
        monkeypatch.setattr(transfers, "count_program", count_program)


@pytest.fixture
def fakes(monkeypatch):
    return Fakes(monkeypatch)


@pytest.fixture
def small(tmp_path):
    return write_mtx(tmp_path / "small.mtx", [[1, 0, 2], [0, -3, 0], [4, 0, 0], [0, 0, 0]])


# Help and usage -------------------------------------------------------------------------------

def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "examples:" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: zeroskip {command}")
    assert "zeroskip " + command in out.split("example", 1)[1]


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_backend_is_a_usage_error(capsys, small):
    with pytest.raises(SystemExit) as info:
        main(["run", str(small), "--backend", "spice"])
    assert info.value.code == 2
    assert "invalid choice: 'spice'" in capsys.readouterr().err


def test_parser_defaults():
    args = build_parser().parse_args(["run", "a.mtx"])
    assert args.backend == "model"
    assert args.seed == 0
    assert args.x is None and args.json is None and not args.waves and not args.saturate


# Errors: one line, exit 2, no traceback -------------------------------------------------------

def test_subprocess_missing_matrix(tmp_path):
    result = subprocess.run([sys.executable, "-m", "zeroskip", "run", "data.mtx"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "data.mtx: cannot read: No such file or directory")


def test_subprocess_malformed_matrix(tmp_path):
    (tmp_path / "bad.mtx").write_text("%%MatrixMarket matrix coordinate complex general\n")
    result = subprocess.run([sys.executable, "-m", "zeroskip", "compile", "bad.mtx"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "bad.mtx:1: complex matrices are not supported")
    assert not (tmp_path / "build" / "bad.program.npz").exists()


def test_bad_configuration_option(capsys, fakes, small):
    code, _, err = run_main(capsys, "run", small, "--pes", "0")
    assert code == 2
    assert_one_line_error(err, "--pes must be between 1 and 64, not 0")


def test_bad_value_width(capsys, fakes, tmp_path):
    code, _, err = run_main(capsys, "generate", "--value-width", "12", "-o", tmp_path / "v")
    assert code == 2
    assert_one_line_error(err, "--value-width must be 8 or 16, not 12")
    assert not (tmp_path / "v").exists()


def test_missing_config_file(capsys, fakes, small, tmp_path):
    path = tmp_path / "none.json"
    code, _, err = run_main(capsys, "compile", small, "--config", path)
    assert code == 2
    assert_one_line_error(err, f"{path}: cannot read configuration: No such file or directory")


def test_vector_length_mismatch(capsys, fakes, small, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.ones(2, dtype=np.int64))
    code, _, err = run_main(capsys, "run", small, "--x", x)
    assert code == 2
    assert_one_line_error(err, f"{x}: vector has 2 entries but the matrix has 3 columns")


def test_value_too_wide_scales_its_row_down(capsys, fakes, tmp_path):
    path = write_mtx(tmp_path / "wide.mtx", [[1, 300], [0, 2]])
    out_json = tmp_path / "r.json"
    code, out, err = run_main(capsys, "run", path, "--value-width", "8", "--acc-width", "16",
                              "--json", out_json)
    assert code == 0, err
    table = parse_table(out)
    # Row 1 takes exponent -2 (300 -> 75); its 1 rounds to 0 and is reported; row 2 stays exact.
    assert table["nnz"] == "2  (of 3 given)"
    assert table["dropped"] == "1 matrix nonzeros rounded to 0"
    assert table["scales"].startswith("row exponents -2 to 0, x_exp 0: ")
    assert "note: 1 of 3 matrix nonzeros round to 0 at their row's scale and are dropped" in out
    report = json.loads(out_json.read_text())
    assert report["quantization"]["row_exp"] == [-2, 0]
    assert (report["nnz_input"], report["nnz_stored"], report["dropped"]) == (3, 2, 1)
    x = np.random.default_rng(0).integers(-8, 8, size=2)
    assert report["y"] == [300 * x[1], 2 * x[1]]
    y = np.array([[1, 300], [0, 2]]) @ x
    assert report["error"]["normwise"] == pytest.approx(abs(x[0]) / np.abs(y).max())


def test_saturate_is_subject_to_the_tolerance(capsys, fakes, tmp_path):
    path = write_mtx(tmp_path / "wide.mtx", [[1, 300], [0, 2]])
    out_json = tmp_path / "r.json"
    code, out, err = run_main(capsys, "run", path, "--value-width", "8", "--acc-width", "16",
                              "--saturate", "--json", out_json)
    assert code == 1
    assert "note: 1 matrix values saturated to the 8-bit range [-128, 127]" in out
    x = np.random.default_rng(0).integers(-8, 8, size=2)
    y = np.array([[1, 300], [0, 2]]) @ x
    normwise = abs(173 * x[1]) / np.abs(y).max()
    assert_one_line_error(err, f"normwise error against float64 {normwise:.3g} exceeds "
                               f"--tolerance 0.01 (1 of 2 rows off by more than 1 %; 1 values "
                               f"saturated); the hardware matches the bit-exact reference, so "
                               f"the loss is quantization: try a wider --value-width or no "
                               f"--saturate")
    report = json.loads(out_json.read_text())
    assert report["saturated"] == 1 and report["matches_reference"] is True
    assert report["within_tolerance"] is False
    code, out, err = run_main(capsys, "run", path, "--value-width", "8", "--acc-width", "16",
                              "--saturate", "--tolerance", "1")
    assert code == 0, err


def test_device_error(capsys, fakes, small, tmp_path):
    fakes.backend_error = DeviceError("the accelerator stopped with DESCRIPTOR at instruction 1")
    out_json = tmp_path / "out" / "r.json"
    code, _, err = run_main(capsys, "run", small, "--json", out_json)
    assert code == 2
    assert_one_line_error(err, "the accelerator stopped with DESCRIPTOR at instruction 1")
    assert not out_json.exists()
    assert list(out_json.parent.iterdir()) == []


def test_device_error_details_are_indented(capsys, fakes, small):
    fakes.backend_error = DeviceError("verilator simulation failed\nlog line 1\nlog line 2")
    code, _, err = run_main(capsys, "run", small, "--backend", "verilator")
    assert code == 2
    assert err.splitlines() == ["zeroskip: error: verilator simulation failed",
                                "  log line 1", "  log line 2"]


def test_accumulator_overflow_scales_the_row_down(capsys, tmp_path):
    path = write_mtx(tmp_path / "big.mtx", [[1, 1, 1], [32767, 32767, 32767]])
    x = tmp_path / "x.txt"
    x.write_text("32767\n32767\n32767\n")
    out_json = tmp_path / "r.json"
    code, out, err = run_main(capsys, "run", path, "--x", x, "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    # 3 x 32767^2 does not fit 32 bits; 3 x 16384 x 32767 does.
    assert report["quantization"]["row_exp"] == [0, -1]
    assert report["y_raw"] == [3 * 32767, 3 * 16384 * 32767]
    assert report["y"] == [3 * 32767, 3 * 32768 * 32767]
    assert report["error"]["normwise"] == pytest.approx(1 / 32767)


def test_reference_overflow_is_an_error(capsys, fakes, tmp_path):
    path = write_mtx(tmp_path / "big.mtx", [[1, 1, 1], [30000, 30000, 30000]])
    fakes.overflow = True        # a reference that overflows although the scales forbid it
    out_json = tmp_path / "r.json"
    code, _, err = run_main(capsys, "run", path, "--json", out_json)
    assert code == 2
    assert_one_line_error(err, "accumulator overflow: a partial sum does not fit 32 signed bits "
                               "(use a wider --acc-width or a narrower --value-width)")
    assert not any(call[0] == "run" for call in fakes.calls)
    assert not out_json.exists()


def test_json_output_under_a_file(capsys, fakes, small, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run_main(capsys, "run", small, "--json", blocker / "r.json")
    assert code == 2
    assert_one_line_error(err)
    assert "Not a directory" in err or "File exists" in err
    assert not any(call[0] == "run" for call in fakes.calls)


def test_missing_optional_package(capsys, fakes, small, monkeypatch):
    def run(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'cocotb'", name="cocotb")
    monkeypatch.setattr(sys.modules["zeroskip.sim.backends"], "run", run)
    code, _, err = run_main(capsys, "run", small, "--backend", "icarus")
    assert code == 2
    assert_one_line_error(err, "missing Python package 'cocotb' (pip install 'zeroskip[sim]')")


def test_missing_zeroskip_module(capsys, small, monkeypatch):
    monkeypatch.setitem(sys.modules, "zeroskip.firmware.compiler", None)
    code, _, err = run_main(capsys, "compile", small)
    assert code == 2
    assert_one_line_error(err)
    assert "zeroskip.firmware.compiler" in err


def test_keyboard_interrupt(capsys, fakes, small):
    fakes.backend_error = KeyboardInterrupt()
    code, _, err = run_main(capsys, "run", small)
    assert code == 130
    assert "Traceback" not in err
    assert err.strip() == "zeroskip: interrupted"


# run ------------------------------------------------------------------------------------------

def test_run_integer_matrix(capsys, fakes, small, tmp_path):
    out_json = tmp_path / "r.json"
    code, out, err = run_main(capsys, "run", small, "--pes", "2", "--json", out_json)
    assert code == 0, err
    table = parse_table(out)
    assert table["backend"] == "model"
    assert table["shape"] == "4 x 3"
    assert table["nnz"] == "4"
    assert table["cycles"] == "40"
    assert table["ideal cycles"].startswith("2 ")
    assert table["utilization"].startswith("5.0 %")
    assert table["matches reference"] == "yes"
    assert table["clock"].startswith("50 MHz on the ulx3s-85f: unrouted estimate: the "
                                     "ulx3s-85f's default build clock 50 MHz (no routed build")
    assert table["compute time"] == "0.80 us  (cycles / clock)"
    assert table["host transfers"] == "11 words (weights 4, inputs 3, results 4)"
    # 7 words written at 3 cycles and 4 read at 5: 41 cycles at 50 MHz.
    assert table["end-to-end AXI"] == \
        "1.62 us  (transfers 0.82 us on axi4-lite, this backend's link)"
    report = json.loads(out_json.read_text())
    assert report["backend"] == "model"
    assert report["time"]["end_to_end_seconds"] == pytest.approx(1.62e-6)
    assert report["pes"] == 2
    assert report["shape"] == [4, 3]
    assert report["nnz"] == 4
    assert report["cycles"] == 40
    assert report["ideal_cycles"] == 2
    assert report["utilization"] == pytest.approx(4 / (2 * 40))
    assert report["matches_reference"] is True
    assert report["y_raw"] == report["y"]
    assert report["error"] == {"normwise": 0.0, "rowwise_max": 0.0, "rows_over_1pct": 0,
                               "max_abs": 0.0, "y_norm": report["error"]["y_norm"],
                               "reference": "float64 A x"}
    assert (report["nnz_input"], report["nnz_stored"], report["dropped"],
            report["saturated"]) == (4, 4, 0, 0)
    assert report["quantization"]["exact"] is True
    assert report["quantization"]["row_exp"] == [0, 0, 0, 0]
    assert table["scales"] == "none: integers stored exactly"
    x = np.random.default_rng(0).integers(-8, 8, size=3)
    dense = np.array([[1, 0, 2], [0, -3, 0], [4, 0, 0], [0, 0, 0]])
    assert report["y"] == (dense @ x).tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "small.mtx"]


def test_run_default_x_is_seeded(capsys, fakes, small):
    assert run_main(capsys, "run", small, "--seed", "5")[0] == 0
    x = [call for call in fakes.calls if call[0] == "run"][0][2]
    assert x.tolist() == np.random.default_rng(5).integers(-8, 8, size=3).tolist()
    assert x.min() >= -8 and x.max() <= 7


def test_run_scaled_matrix(capsys, fakes, examples_data, tmp_path):
    from zeroskip.firmware.loader import load_matrix
    out_json = tmp_path / "r.json"
    path = examples_data / "west0067.mtx"
    code, out, err = run_main(capsys, "run", path, "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    row_exp = np.array(report["quantization"]["row_exp"])
    assert len(row_exp) == 67 and row_exp.min() > 0 and report["quantization"]["x_exp"] == 0
    assert report["y"] == pytest.approx(list(np.ldexp(report["y_raw"], -row_exp)))
    x = np.random.default_rng(0).integers(-8, 8, size=67)
    y = load_matrix(path) @ x
    error = np.abs(np.array(report["y"]) - y).max() / np.abs(y).max()
    assert report["error"]["normwise"] == pytest.approx(error) and error < 1e-4
    assert report["error"]["rows_over_1pct"] == 0
    table = parse_table(out)
    assert table["scales"].startswith(f"row exponents {row_exp.min()} to {row_exp.max()}")
    assert table["error vs float64"].startswith("normwise ")


def test_run_mismatch_exits_1(capsys, fakes, small, tmp_path):
    fakes.corrupt = True
    out_json = tmp_path / "r.json"
    code, out, err = run_main(capsys, "run", small, "--json", out_json)
    assert code == 1
    assert "matches reference  NO (1 of 4 rows differ; first row 1" in out
    assert_one_line_error(err)
    assert json.loads(out_json.read_text())["matches_reference"] is False


def test_run_vector_file_and_config_file(capsys, fakes, small, tmp_path):
    config_path = tmp_path / "c.json"
    AcceleratorConfig(pes=3, value_width=8, acc_width=24).save(config_path)
    x = tmp_path / "x.txt"
    x.write_text("1\n2\n3\n")
    code, out, _ = run_main(capsys, "run", small, "--x", x, "--config", config_path,
                            "--pes", "2", "--backend", "icarus")
    assert code == 0
    config = [call for call in fakes.calls if call[0] == "compile"][0][4]
    assert (config.pes, config.value_width, config.acc_width) == (2, 8, 24)
    assert [call for call in fakes.calls if call[0] == "run"][0][1] == "icarus"
    assert parse_table(out)["x"] == str(x)


# compile, disasm, generate --------------------------------------------------------------------

def test_compile_writes_program(capsys, fakes, small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(capsys, "compile", small, "--listing")
    assert code == 0
    output = tmp_path / "build" / "small.program.npz"
    assert output.read_bytes() == b"fake program small"
    assert out.startswith("wrote build/small.program.npz: 4 x 3, 4 nonzeros, 1 tile,")
    assert "fake listing" in out
    assert [p.name for p in output.parent.iterdir()] == ["small.program.npz"]


def test_compile_failure_leaves_no_partial_file(capsys, fakes, small, tmp_path):
    fakes.save_error = OSError(28, "No space left on device", "x")
    output = tmp_path / "p.npz"
    code, _, err = run_main(capsys, "compile", small, "-o", output)
    assert code == 2
    assert_one_line_error(err, "x: No space left on device")
    assert list(tmp_path.iterdir()) == [small]


def test_disasm(capsys, fakes, small, tmp_path):
    output = tmp_path / "p.npz"
    assert run_main(capsys, "compile", small, "-o", output)[0] == 0
    code, out, _ = run_main(capsys, "disasm", output)
    assert code == 0
    assert out == "program 'small': fake listing\n"


def test_disasm_missing_program(capsys, tmp_path):
    path = tmp_path / "p.npz"
    code, out, err = run_main(capsys, "disasm", path)
    assert code == 2
    assert out == ""
    assert_one_line_error(err)
    assert str(path) in err and "No such file or directory" in err


def test_disasm_not_a_program(capsys, tmp_path):
    path = tmp_path / "p.npz"
    path.write_text("not a zip")
    code, _, err = run_main(capsys, "disasm", path)
    assert code == 2
    assert_one_line_error(err)
    assert str(path) in err


def test_generate(capsys, fakes, tmp_path):
    out_dir = tmp_path / "verilog"
    code, out, _ = run_main(capsys, "generate", "--pes", "4", "--value-width", "8",
                            "--acc-width", "20", "-o", out_dir)
    assert code == 0
    _, config, directory = fakes.calls[0]
    assert config == AcceleratorConfig(pes=4, value_width=8, acc_width=20)
    assert str(directory) == str(out_dir)
    assert f"wrote {out_dir / 'zeroskip_top.v'}" in out
    assert f"wrote {out_dir / 'zeroskip_top.config.json'}" in out
    assert config.fingerprint in out


# demo -----------------------------------------------------------------------------------------

class DemoParts:
    """Records what the demo hands the simulation and its network part (faked here)."""

    def __init__(self, monkeypatch):
        self.shared, self.network = [], []
        monkeypatch.setattr(demo_module, "_shared_verilog", self.shared_verilog)
        monkeypatch.setattr(demo_module, "network_part", self.network_part)

    def shared_verilog(self, backend, config, text):
        self.shared.append((backend, config, text))
        return contextlib.nullcontext()

    def network_part(self, config, backend, **options):
        self.network.append((config, backend, options))
        print("network part")


@pytest.fixture
def demo_parts(monkeypatch):
    return DemoParts(monkeypatch)


def test_demo(capsys, fakes, demo_parts, tmp_path, monkeypatch):
    import zeroskip.app.commands.demo
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zeroskip.app.commands.demo, "_rtl_backend", lambda: ("verilator", []))
    code, out, err = run_main(capsys, "demo")
    assert code == 0, err
    config = demo_module.demo_config()
    assert (config.value_width, config.acc_width, config.formats) == (8, 32, ("csr", "csc"))
    lines = out.splitlines()
    assert lines[0] == "zeroskip demo: y = A x on a SuiteSparse matrix, then a 90 % pruned " \
                       "network through ONNX"
    assert lines[1] == (f"  accelerator for both parts: 8 PEs, 8-bit values, 32-bit accumulators, "
                        f"formats csr+csc (fingerprint {config.fingerprint}): the ulx3s-85f "
                        f"configuration for 8-bit networks, so one Verilog and one simulator "
                        f"build serve both")
    assert "note: a first run compiles the verilator simulation" in out
    lines = [line for line in lines[2:] if "note:" not in line]
    assert re.fullmatch(r"\[1/8\] generating Verilog \.\.\. done \(\d+\.\d s\): .*", lines[0])
    assert lines[1] == "SpMV: y = A x for west0067 (SuiteSparse HB/west0067: 67 x 67, 294 " \
                       "nonzeros); x: random integers in [-8, 7] (seed 0)"
    assert lines[2].startswith("[2/8] compiling west0067 ... done (")
    assert lines[3].startswith("[3/8] running on the ISA model ... done (")
    assert lines[4].startswith("[4/8] running the generated hardware on Verilator ... done (")
    assert lines[5].startswith("verified: ")
    assert "utilization" in out
    assert lines[-1] == "network part"
    assert [call[1] for call in fakes.calls if call[0] == "run"] == ["model", "verilator"]
    assert [call[0] for call in fakes.calls].count("generate") == 1
    assert all(call[4] == config for call in fakes.calls if call[0] == "compile")
    verilog = tmp_path / "build" / "demo" / "zeroskip_top.v"
    # The simulation gets the Verilog the demo generated; the network part the same hardware.
    assert demo_parts.shared == [("verilator", config, verilog.read_text())]
    assert [(c, b) for c, b, _ in demo_parts.network] == [(config, "verilator")]


def test_demo_falls_back_without_simulators(capsys, fakes, demo_parts, tmp_path, monkeypatch):
    import zeroskip.app.commands.demo
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zeroskip.app.commands.demo, "_find_tool", lambda name: False)
    code, out, _ = run_main(capsys, "demo")
    if importlib.util.find_spec("cocotb") is not None:
        assert "note: verilator is not installed" in out
        assert "note: Icarus Verilog is not installed" in out
    assert "[4/8] running the generated hardware on Amaranth's simulator ... done" in out
    assert code == 0
    assert [call[1] for call in fakes.calls if call[0] == "run"] == ["model", "pysim"]
    assert [b for _, b, _ in demo_parts.network] == ["pysim"]


def test_demo_mismatch(capsys, fakes, demo_parts, tmp_path, monkeypatch):
    import zeroskip.app.commands.demo
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zeroskip.app.commands.demo, "_rtl_backend", lambda: ("icarus", []))
    fakes.corrupt = True
    code, out, err = run_main(capsys, "demo")
    assert code == 1
    assert "verified" not in out
    assert_one_line_error(err)
    assert "model: NO (1 of 67 rows differ" in err
    assert demo_parts.network == []


# The real flow (skipped until the compiler, reference and ISA model exist) --------------------

def _have(*modules):
    try:
        return all(importlib.util.find_spec(module) is not None for module in modules)
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(not _have("zeroskip.firmware.compiler", "zeroskip.firmware.reference",
                              "zeroskip.firmware.model"),
                    reason="the compiler, reference or ISA model is not there yet")
@pytest.mark.parametrize("name", ["cage5", "Erdos971"])
def test_run_model_end_to_end(capsys, examples_data, tmp_path, name):
    out_json = tmp_path / "r.json"
    code, out, err = run_main(capsys, "run", examples_data / f"{name}.mtx", "--pes", "4",
                              "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["matches_reference"] is True
    assert report["cycles"] >= report["ideal_cycles"] > 0
    assert 0 < report["utilization"] <= 1


# Formats, kernels and explain (the real compiler and ISA model) -------------------------------

ALL_FORMATS = "csr,coo,bitmap,nm,dense,csc"


@pytest.fixture
def grid(tmp_path):
    """A 6 x 8 integer matrix: row 1 is 2:4 structured, row 3 is not."""
    dense = np.array([[1, 0, 0, 2, 0, 0, 0, 0],
                      [0, 3, 4, 0, 0, 0, 5, 0],
                      [0, 0, 0, 0, 0, 0, 0, 0],
                      [6, 7, 8, 0, 0, 0, 0, -1],
                      [0, 0, 0, 0, 9, 0, 0, 0],
                      [0, 0, 2, 0, 0, 0, 0, 3]])
    return write_mtx(tmp_path / "grid.mtx", dense), dense


def test_parser_defaults_of_the_kernel_options():
    args = build_parser().parse_args(["run", "a.mtx"])
    assert (args.kernel, args.format, args.nm, args.prune_nm, args.formats) == \
        ("auto", "auto", "2:4", False, None)


def test_run_matrix_operand_json(capsys, grid, tmp_path):
    path, dense = grid
    x = np.arange(24).reshape(8, 3) % 5 - 2
    np.save(tmp_path / "X.npy", x)
    out_json = tmp_path / "r.json"
    code, out, err = run_main(capsys, "run", path, "--x", tmp_path / "X.npy", "--formats",
                              ALL_FORMATS, "--json", out_json)
    assert code == 0, err
    table = parse_table(out)
    assert table["kernel"] == "spmm"
    assert table["matches reference"] == "yes"
    assert "dense cycles" in table and table["speedup vs dense"].endswith("x")
    report = json.loads(out_json.read_text())
    assert report["kernel"] == "spmm" and report["x_columns"] == 3
    cpu = report["cpu"]
    assert cpu["accelerator_s"] == pytest.approx(report["cycles"] / (cpu["clock_mhz"] * 1e6))
    assert table["compute time"].startswith(f"{1e6 * cpu['accelerator_s']:.2f} us  (cycles")
    assert cpu["clock_mhz"] == report["time"]["clock_mhz"]
    assert table["scipy CSR 1 core"].startswith(f"{1e6 * cpu['scipy_csr_1_thread_s']:.2f} us")
    assert table["vs scipy 1 core"].startswith(f"{cpu['speedup_vs_scipy_csr_1_thread']:.2f}x")
    assert report["y"] == (dense @ x).tolist()
    for key in ("format", "dataflow", "macs", "skipped", "dense_cycles", "speedup_vs_dense"):
        assert key in report
    assert report["dense_cycles_source"] == "predicted by the ISA model"
    assert report["speedup_vs_dense"] == pytest.approx(report["dense_cycles"] / report["cycles"])
    assert report["macs"] == int(sum(np.count_nonzero(x[np.flatnonzero(row), k])
                                     for row in dense for k in range(3)))


def test_run_sparse_vector_in_column_mode(capsys, grid, tmp_path):
    path, dense = grid
    x = np.zeros(8, dtype=np.int64)
    x[[2, 7]] = [3, -1]
    x_path = write_mtx(tmp_path / "x.mtx", x[:, None])
    out_json = tmp_path / "r.json"
    code, out, err = run_main(capsys, "run", path, "--x", x_path, "--formats", "csr,csc",
                              "--format", "csc", "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert (report["kernel"], report["format"], report["dataflow"]) == \
        ("spmspv", "csc", "column")
    assert report["y"] == (dense @ x).tolist()
    assert report["gather_stalls"] == 0


def test_run_sparse_matrix_operand(capsys, grid, tmp_path):
    path, dense = grid
    x = scipy.sparse.random(8, 5, density=0.2, format="csr", random_state=1,
                            data_rvs=lambda n: np.arange(1, n + 1))
    scipy.sparse.save_npz(tmp_path / "X.npz", x)
    out_json = tmp_path / "r.json"
    code, _, err = run_main(capsys, "run", path, "--x", tmp_path / "X.npz", "--formats",
                            ALL_FORMATS, "--kernel", "spmspm", "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["kernel"] == "spmspm" and report["matches_reference"]
    assert np.array_equal(np.array(report["y"]), dense @ x.toarray())


@pytest.mark.parametrize("fmt", ["csr", "coo", "bitmap", "dense", "csc"])
def test_run_every_format(capsys, grid, fmt):
    path, _ = grid
    code, out, err = run_main(capsys, "run", path, "--formats", ALL_FORMATS, "--format", fmt)
    assert code == 0, err
    assert parse_table(out)["format"].startswith(fmt + " (")


def test_run_prune_nm(capsys, grid):
    path, _ = grid
    code, out, err = run_main(capsys, "run", path, "--formats", ALL_FORMATS, "--format", "nm",
                              "--prune-nm")
    assert code == 0, err
    assert "note: pruned to 2:4: 1 of 12 nonzeros removed" in out
    assert parse_table(out)["format"] == "nm (row dataflow)"


def test_random_operands_of_the_kernels(capsys, grid):
    path, _ = grid
    code, out, err = run_main(capsys, "run", path, "--kernel", "spmspm", "--formats", "csr,csc")
    assert code == 0, err
    table = parse_table(out)
    assert table["kernel"] == "spmspm"
    assert table["x"] == "4 columns of random integers in [-8, 7], seed 0, 25 % kept nonzero"


@pytest.mark.parametrize("argv, message", [
    (["--format", "nm", "--formats", "csr,nm"],
     "matrix is not 2:4 structured: row 3, columns 0-3 hold 3 nonzeros (use --prune-nm)"),
    (["--format", "bitmap"], "format 'bitmap' is not enabled in this configuration "
                             "(formats: csr)"),
    (["--format", "csr", "--prune-nm"],
     "--prune-nm prunes to N:M for --format nm or auto, not --format csr"),
    (["--format", "nm", "--formats", "csr,nm", "--nm", "3:5"],
     "--nm: N:M needs 1 <= N <= M < 256 with M a power of two, not 3:5"),
    (["--formats", "csr,ell"], "--formats: unknown format 'ell'; known: csr, coo, bitmap, nm, "
                               "dense, csc"),
])
def test_kernel_option_errors(capsys, grid, argv, message):
    path, _ = grid
    code, out, err = run_main(capsys, "run", path, *argv)
    assert code == 2
    assert_one_line_error(err, message)


def test_operand_file_errors(capsys, grid, tmp_path):
    path, _ = grid
    np.save(tmp_path / "X.npy", np.ones((4, 2), dtype=np.int64))
    code, _, err = run_main(capsys, "run", path, "--x", tmp_path / "X.npy")
    assert code == 2
    assert_one_line_error(err, f"{tmp_path / 'X.npy'}: right-hand matrix has 4 rows but the "
                               f"matrix has 8 columns")
    np.save(tmp_path / "M.npy", np.ones((8, 2), dtype=np.int64))
    code, _, err = run_main(capsys, "run", path, "--x", tmp_path / "M.npy", "--kernel", "spmv")
    assert code == 2
    assert_one_line_error(err, "kernel spmv takes a vector but x is a 8 x 2 matrix (use spmm "
                               "or spmspm)")
    (tmp_path / "x.csv").write_text("1,2\n")
    code, _, err = run_main(capsys, "run", path, "--x", tmp_path / "x.csv")
    assert code == 2
    assert_one_line_error(err, f"{tmp_path / 'x.csv'}: unknown operand file type '.csv' "
                               f"(expected .npy, .mtx, .npz, .txt)")


def test_explain(capsys, grid, tmp_path):
    path, _ = grid
    x = np.zeros(8, dtype=np.int64)
    x[4] = 2
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_main(capsys, "explain", path, "--formats", ALL_FORMATS, "--x",
                              tmp_path / "x.npy")
    assert code == 0, err
    assert out.startswith("explain grid: 6 x 8, 12 nonzeros")
    assert f"operand: {tmp_path / 'x.npy'}: vector of 8, 1 of 8 nonzero (12.5 %)" in out
    assert "kernel: spmspv" in out
    for name in ("csr", "coo", "bitmap", "nm", "dense", "csc"):
        assert re.search(rf"^  {name} ", out, re.M), name
    assert "not 2:4 structured" in out
    assert re.search(r"^  -> \w+: ", out, re.M)
    assert re.search(r"^program: .* predicted \d+ cycles; dense mode \d+ cycles", out, re.M)


def test_explain_without_operand(capsys, examples_data):
    code, out, err = run_main(capsys, "explain", examples_data / "west0067.mtx")
    assert code == 0, err
    assert "operand: none given (--x): every activation assumed nonzero" in out
    assert "kernel: spmv" in out
    assert re.search(r"^  csr +row +1 +\d+ +winner", out, re.M)


def test_compile_with_a_format(capsys, grid, tmp_path):
    path, _ = grid
    output = tmp_path / "p.npz"
    code, out, err = run_main(capsys, "compile", path, "-o", output, "--formats", ALL_FORMATS,
                              "--format", "dense", "--listing")
    assert code == 0, err
    assert re.search(r"^kernel spmv, format dense \(dense dataflow\), predicted \d+ cycles",
                     out, re.M)
    assert "fmt=dense" in out
    code, out, err = run_main(capsys, "disasm", output)
    assert code == 0 and "format dense, dataflow dense" in out


def test_compile_matrix_kernel_needs_an_operand(capsys, grid, tmp_path):
    path, _ = grid
    code, _, err = run_main(capsys, "compile", path, "--kernel", "spmm", "-o", tmp_path / "p.npz")
    assert code == 2
    assert_one_line_error(err, "--kernel spmm needs --x FILE: the right-hand matrix (or a "
                               "sample with its number of columns)")
    np.save(tmp_path / "X.npy", np.ones((8, 3), dtype=np.int64))
    code, out, err = run_main(capsys, "explain", path, "--kernel", "spmm", "--x",
                              tmp_path / "X.npy")
    assert code == 0, err
    assert "kernel: spmm (3 right-hand column(s);" in out


def test_boards_lists_every_target(capsys):
    code, out, err = run_main(capsys, "boards")
    assert code == 0 and err == ""
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["icebreaker", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f",
                     "orangecrab"]


def test_build_rejects_an_unknown_board(capsys):
    code, out, err = run_main(capsys, "build", "--board", "nosuch")
    assert code == 2
    assert_one_line_error(err, "unknown board 'nosuch'; known boards: icebreaker, ulx3s-12f, "
                               "ulx3s-25f, ulx3s-45f, ulx3s-85f, orangecrab, ulx3s")


def test_board_backend_needs_a_port(capsys, examples_data):
    code, out, err = run_main(capsys, "run", str(examples_data / "cage5.mtx"),
                              "--backend", "board")
    assert code == 2
    assert_one_line_error(err, "--backend board needs --port (the board's serial device, "
                               "e.g. /dev/ttyUSB1)")


def test_board_backend_reports_a_missing_port(capsys, examples_data, tmp_path):
    port = tmp_path / "ttyNOPE"
    code, out, err = run_main(capsys, "run", str(examples_data / "cage5.mtx"),
                              "--backend", "board", "--port", str(port))
    assert code == 2
    assert_one_line_error(err, f"cannot open {port}: No such file or directory")


def ragged_dense():
    """Two rows of 300 nonzeros among rows of two."""
    rng = np.random.default_rng(3)
    dense = np.zeros((32, 320), dtype=np.int64)
    for row in range(32):
        count = 300 if row in (4, 5) else 2
        dense[row, rng.choice(320, count, replace=False)] = rng.integers(1, 9, count)
    return dense


def test_run_splits_long_rows_and_reports_it(capsys, tmp_path):
    dense = ragged_dense()
    path = write_mtx(tmp_path / "ragged.mtx", dense)
    x = np.arange(320) % 7 - 3
    np.save(tmp_path / "x.npy", x)
    reports = {}
    for choice in ("auto", "no"):
        out_json = tmp_path / f"{choice}.json"
        code, _out, err = run_main(capsys, "run", path, "--x", tmp_path / "x.npy", "--pes", "8",
                                   "--split-rows", choice, "--json", out_json)
        assert code == 0, err
        reports[choice] = json.loads(out_json.read_text())
        assert reports[choice]["y"] == (dense @ x).tolist()
    assert reports["auto"]["rows_split"] and not reports["no"]["rows_split"]
    assert reports["auto"]["cycles"] < reports["no"]["cycles"] / 2
    assert reports["auto"]["utilization"] > 2 * reports["no"]["utilization"]


def test_split_rows_without_the_network_is_refused(capsys, tmp_path):
    path = write_mtx(tmp_path / "ragged.mtx", ragged_dense())
    code, _out, err = run_main(capsys, "compile", path, "--no-reduce", "--split-rows", "yes",
                               "-o", tmp_path / "p.npz")
    assert code != 0
    assert_one_line_error(err, "--split-rows yes needs the scatter/reduce network, which this "
                               "configuration lacks (reduce off); use --split-rows auto or no")
    assert not (tmp_path / "p.npz").exists()


def test_explain_names_the_biggest_loss(capsys, tmp_path):
    from zeroskip.firmware.explain import losses
    # 60 empty rows above 4 short ones: empty rows whose result is 0 are not run.
    dense = np.zeros((64, 8), dtype=np.int64)
    dense[60:, :2] = 1
    path = write_mtx(tmp_path / "sparse_rows.mtx", dense)
    code, out, err = run_main(capsys, "explain", path, "--pes", "2")
    assert code == 0, err
    assert "CV" not in out
    assert "a run of consecutive rows stored together" in out
    table = dict(re.findall(r"^  (useful work|empty rows|waiting for x|uneven work|"
                            r"per-tile overhead) +(\d+)", out, re.M))
    assert int(table["useful work"]) == 8
    assert int(table["empty rows"]) == 0
    pes_cycles = re.search(r"2 PEs x (\d+) cycles = (\d+) PE cycles", out)
    assert int(pes_cycles.group(2)) == 2 * int(pes_cycles.group(1))
    assert re.search(r"^biggest loss: per-tile overhead, ", out, re.M)
    # The parts add up to the PE cycles.
    parts = losses(types.SimpleNamespace(config=AcceleratorConfig(pes=2), lane_work=[5, 5],
                                         lane_nnz=[4, 4], tiles=[]),
                   {"cycles": 10, "pe_busy": [4, 4], "gather_stalls": 1})
    assert parts == {"work": 8, "empty_rows": 2, "gather_stalls": 1, "scatter_stalls": 0,
                     "overhead": 0, "imbalance": 9, "total": 20}


def test_run_help_lists_every_backend(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    backends = out.split("backends:", 1)[1].split("kernels:", 1)[0]
    assert re.findall(r"^  (\w+) ", backends, re.M) == ["model", "pysim", "icarus", "verilator",
                                                        "board"]
    assert "--tolerance T" in out and "PROGRAM" not in out.split("usage:", 1)[0]


def test_compile_without_x_says_it_assumes_the_worst_case(capsys, examples_data, tmp_path):
    code, out, err = run_main(capsys, "compile", examples_data / "cage5.mtx", "-o",
                              tmp_path / "p.npz")
    assert code == 0, err
    assert "note: no --x given: the row scales assume the largest possible x (every scaled " \
           "|x_q| = 2^15), so no accumulator can overflow" in out
    # Run later without --x: random integers shaped for the program.
    code, out, err = run_main(capsys, "run", tmp_path / "p.npz", "--seed", "4")
    assert code == 0, err
    table = parse_table(out)
    assert table["x"] == "random integers in [-8, 7], seed 4"
    assert table["matches reference"] == "yes"
    assert table["error vs float64"].startswith("normwise ")
