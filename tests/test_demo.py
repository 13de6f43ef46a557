"""zeroskip demo's network part (on the model only) and the Verilog it hands the simulation.

The command's SpMV part and its exit codes are tested with fakes in
tests/cli/test_cli.py; the full demo builds a Verilator simulation and is
left to ``make demo``.
"""

import re

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from zeroskip.app import demo  # noqa: E402
from zeroskip.app.nn.onnx_io import load_onnx  # noqa: E402

IMAGES, RTL_IMAGES = 24, 4


@pytest.fixture(scope="module")
def trained():
    """The demo's trained and pruned network (trained once for this module)."""
    return demo.train_step()


@pytest.fixture
def config():
    return demo.demo_config()


def _network_part(monkeypatch, trained, config, tmp_path):
    monkeypatch.setattr(demo, "train_step", lambda index=5: trained)
    return demo.network_part(config, "model", build_dir=tmp_path, images=IMAGES,
                             rtl_images=RTL_IMAGES)


def test_network_part_on_the_model(capsys, monkeypatch, trained, config, tmp_path):
    network, data = trained
    kept = sum(int(np.count_nonzero(layer.dense_weight())) for layer in network.layers)
    assert kept == 474   # 10 % of the 4736 weights, rounded per layer
    result = _network_part(monkeypatch, trained, config, tmp_path)
    out = capsys.readouterr().out
    lines = out.splitlines()
    onnx_path = tmp_path / "digits-mlp-90.onnx"
    assert re.fullmatch(rf"\[6/8\] exporting it to ONNX and reading it back \.\.\. done "
                        rf"\(\d+\.\d s\): {re.escape(str(onnx_path))}: 4 nodes \(Gemm, Relu, "
                        rf"Identity\), read back by zeroskip.app.nn.onnx_io as 2 layers", lines[0])
    assert lines[1].startswith(f"[7/8] running the {IMAGES} test images on the ISA model")
    assert lines[1].endswith(f": {result['cycles']} cycles")
    assert lines[2].startswith(f"[8/8] running {RTL_IMAGES} of them on the ISA model ... done")
    assert lines[3] == (f"verified: the {RTL_IMAGES} images' output integers from model equal "
                        f"the ISA model's, bit for bit, and so do the cycles of every layer "
                        f"({lines[2].rsplit(': ', 1)[1].split()[0]}); the model's {IMAGES} "
                        f"outputs equal the quantized reference")
    assert result["bit_exact_vs_quantized_reference"] is True
    # The run went through the ONNX file: it holds the trained weights (as float32).
    for layer, read in zip(network.layers, load_onnx(onnx_path).layers):
        assert np.array_equal(read.dense_weight(), layer.dense_weight().astype(np.float32))
    # The printed accuracy is the one the outputs give.
    labels = data["y_test"][:IMAGES]
    accuracy = np.mean(np.argmax(np.asarray(result["outputs"]), axis=1) == labels)
    assert result["accuracy"] == accuracy
    assert f"  accuracy {100 * accuracy:.2f} % on the {IMAGES} test images" in out
    # Cycles per inference, and dense mode above its multiplier bound (64 x 64 + 10 x 64 / 8 PEs).
    per_inference = result["cycles"] / IMAGES
    assert f"  cycles per inference {per_inference:.1f} (dense mode" in out
    assert result["dense_mode_cycles_per_inference"] >= (64 * 64 + 10 * 64) / config.pes
    acc = result["accelerator"]
    assert f"    clock: {acc['clock_source']}" in out
    scipy_s = result["cpu"]["scipy_sparse_1_thread_s"]
    assert (f"{1e6 * scipy_s:.2f} us = {scipy_s / acc['seconds_per_inference']:.2f}x the "
            f"accelerator's compute time") in out
    assert f"accelerator {result['energy_per_inference_nj']:.2f} nJ compute" in out
    assert f"    CPU power: {result['cpu']['energy_basis']}" in out


def test_network_part_mismatch(monkeypatch, trained, config, tmp_path):
    import zeroskip.app.nn.infer
    evaluate, calls = zeroskip.app.nn.infer.evaluate, []

    def corrupt_second_run(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        calls.append(kwargs["backend"])
        if len(calls) == 2:           # the simulator's run (here the model again)
            result["outputs"][1][3] += 1.0
        return result

    monkeypatch.setattr(zeroskip.app.nn.infer, "evaluate", corrupt_second_run)
    with pytest.raises(demo.Mismatch) as info:
        _network_part(monkeypatch, trained, config, tmp_path)
    assert str(info.value) == (f"digits: the model outputs of 1 of {RTL_IMAGES} images differ "
                               f"from the ISA model's (first: image 2)")


def test_simulation_uses_the_shared_verilog(monkeypatch, tmp_path, config):
    pytest.importorskip("cocotb_tools")
    import cocotb_tools.runner

    from zeroskip.sim import cocotb_backend

    generated = []

    def verilog_text(config_):
        generated.append(config_)
        return "module zeroskip_top;\nendmodule\n"

    class Runner:
        def build(self, **options):
            self.options = options

    monkeypatch.setattr(cocotb_backend, "verilog_text", verilog_text)
    monkeypatch.setattr(cocotb_backend, "_check_simulator", lambda simulator: None)
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda simulator: Runner())
    shared = "module zeroskip_top; // the demo's\nendmodule\n"
    with cocotb_backend.shared_verilog(config, shared):
        _, sim_dir = cocotb_backend.build_simulation("verilator", config, build_dir=tmp_path)
    assert generated == []
    assert (sim_dir / "zeroskip_top.v").read_text() == shared
    # Outside the block the build generates its own, once, and rewrites the changed file.
    cocotb_backend.build_simulation("verilator", config, build_dir=tmp_path)
    assert generated == [config]
    assert (sim_dir / "zeroskip_top.v").read_text() == "module zeroskip_top;\nendmodule\n"
    assert (sim_dir / "zeroskip_top.config.json").read_text() == config.to_json()
