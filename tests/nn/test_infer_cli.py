"""zeroskip infer: JSON fields, baselines and bad input (one line, exit 2)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from zeroskip.app.cli import main
from zeroskip.app.nn.infer import JSON_FIELDS
from zeroskip.app.nn.onnx_io import save_onnx

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    net = nn_helpers.tiny_network(3)
    x = nn_helpers.sparse_inputs(20, net.inputs, 4)
    y = np.argmax(net.forward(x), axis=1)
    save_onnx(net, root / "net.onnx")
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    return root


def test_infer_writes_every_field(files, capsys):
    out = files / "out.json"
    assert main(["infer", str(files / "net.onnx"), "--inputs", str(files / "x.npy"),
                 "--labels", str(files / "y.npy"), "--prune", "0.5", "--json", str(out),
                 "--batch", "8"]) == 0
    text = capsys.readouterr().out
    assert "bit-exact with the quantized reference: yes" in text
    data = json.loads(out.read_text())
    for field in JSON_FIELDS:
        assert field in data, field
    assert data["images"] == 20 and len(data["outputs"]) == 20
    assert data["backend"] == "model"
    assert data["float_accuracy"] == 1.0          # labels are the float network's own
    for layer in data["layers"]:
        for key in ("shape", "nnz", "density", "cycles", "utilization", "macs", "skipped"):
            assert key in layer
        work = layer["lane_balance"]["lane_work"]
        assert len(work) == data["accelerator"]["pes"] and sum(work) >= layer["nnz"]
        assert layer["lane_balance"]["balance"] == max(work) / (sum(work) / len(work))
    assert data["layers"][0]["nnz"] <= 0.5 * 16 * 24 + 1
    cpu = data["cpu"]
    for key in ("dense_1_thread_s", "dense_all_threads_s", "pruned_1_thread_s",
                "pruned_all_threads_s", "accelerator_s"):
        assert cpu[key] > 0
    assert cpu["speedup_vs_dense_1_thread"] == pytest.approx(
        cpu["dense_1_thread_s"] / cpu["accelerator_s"])
    assert cpu["accelerator_s"] == data["accelerator"]["seconds_per_inference"]
    assert cpu["scipy_sparse_1_thread_s"] > 0
    assert cpu["speedup_vs_scipy_sparse_1_thread"] == pytest.approx(
        cpu["scipy_sparse_1_thread_s"] / cpu["accelerator_s"])
    assert cpu["scipy_sparse_top1_agreement"] == 1.0      # the same answers as float64
    assert cpu["scipy_sparse_nonzero_rows_equal"]
    assert cpu["scipy_sparse_max_abs_diff_vs_float64"] < 1e-12
    assert set(cpu["energy_per_inference_nj"]) == {
        "scipy_sparse_1_thread", "onnxruntime_dense_1_thread", "onnxruntime_pruned_1_thread"}
    for key, nj in cpu["energy_per_inference_nj"].items():
        assert nj > 0
        assert cpu["energy_ratio_vs_accelerator"][key] == pytest.approx(
            nj / data["energy_per_inference_nj"])
    assert cpu["energy_basis"].startswith(("RAPL package energy counters", "generic estimate",
                                           "AMD ", "Intel "))
    assert "ASIC-style event-model projection" in cpu["accelerator_energy_basis"]
    assert "scipy.sparse float64, 1 core" in text and "CPU power: " in text
    assert data["accelerator"]["board"] == "ulx3s-85f"
    assert data["accelerator"]["clock_mhz"] == 50 and data["accelerator"]["pes"] == 8
    assert data["energy_per_inference_nj"] < data["dense_mode_energy_per_inference_nj"]
    assert data["cycles_per_inference"] < data["dense_mode_cycles_per_inference"]


def test_nm_pruning(files):
    out = files / "nm.json"
    assert main(["infer", str(files / "net.onnx"), "--inputs", str(files / "x.npy"),
                 "--nm", "2:4", "--no-baseline", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["pruning"] == {"nm": "2:4"}
    assert data["bit_exact_vs_quantized_reference"]


@pytest.mark.parametrize("extra, message", [
    (["--prune", "1.0"], "--prune: sparsity must be in [0, 1), not 1.0"),
    (["--prune", "abc"], "--prune: sparsity must be a number in [0, 1), not 'abc'"),
    (["--nm", "3:6"], "--nm: N:M needs 1 <= N <= M < 256 with M a power of two, not 3:6"),
    (["--labels", "LABELS_BAD"], "labels: shape (3,) does not match the 20 inputs"),
    (["--inputs", "X_BAD"], "each input has 5 features"),
    (["--inputs", "X_STR"], "dtype <U1 is not numeric"),
    (["--inputs", "MISSING"], "no such file"),
])
def test_bad_input_one_line_exit_2(files, capsys, extra, message):
    np.save(files / "labels_bad.npy", np.array([1, 2, 3]))
    np.save(files / "x_bad.npy", np.zeros((4, 5)))
    np.save(files / "x_str.npy", np.array([["a"] * 24]))
    names = {"LABELS_BAD": files / "labels_bad.npy", "X_BAD": files / "x_bad.npy",
             "X_STR": files / "x_str.npy", "MISSING": files / "missing.npy"}
    extra = [str(names.get(a, a)) for a in extra]
    argv = ["infer", str(files / "net.onnx"), "--inputs", str(files / "x.npy"), "--no-baseline",
            "--json", str(files / "never.json")]
    if "--inputs" in extra:
        argv[3] = extra[1]
        extra = []
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (files / "never.json").exists()
