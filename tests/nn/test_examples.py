"""The shipped examples on the model backend: digits and the Graph Challenge."""

import json
from pathlib import Path

import numpy as np

from zeroskip.app.nn import digits
from zeroskip.app.nn import graph_challenge as gc
from zeroskip.app.nn.infer import evaluate
from zeroskip.app.nn.prune import prune_network

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "graph-challenge"


def test_digits_90_percent_gradual_int8_within_two_points():
    x_train, x_test, y_train, y_test = digits.load_data()
    model = digits.train(x_train, y_train)
    dense = digits.to_network(model)
    dense_accuracy = digits.accuracy(dense.forward(x_test), y_test)
    # One-shot 90 % pruning without retraining loses most of the accuracy ...
    oneshot, _ = prune_network(dense, sparsity=0.9)
    assert digits.accuracy(oneshot.forward(x_test), y_test) < dense_accuracy - 0.2
    # ... gradual pruning with partial_fit and masks keeps it.
    pruned, masks = digits.gradual_prune(model, x_train, y_train, 0.9)
    network = digits.to_network(pruned)
    assert [round(layer.density, 2) for layer in network.layers] == [0.1, 0.1]
    result = evaluate(network, x_test, labels=y_test, value_width=8, calibrate=len(x_train),
                      baseline=False)
    assert result["bit_exact_vs_quantized_reference"]
    assert result["images"] == len(x_test) == 450
    assert dense_accuracy - result["accuracy"] <= 0.02
    # 64 x 64 and 10 x 64 layers: a tile's fixed cost (SPMV_OVERHEAD, the
    # gather's latency) is a large share of 90 %-sparse work on 8 lanes.
    assert result["speedup_over_dense_mode"] > 2
    assert result["cycles_per_inference"] < result["dense_mode_cycles_per_inference"] / 2


def test_graph_challenge_categories_on_a_subset():
    network, images, truth = gc.load(DATA)
    assert len(network.layers) == 30 and images.shape == (1200, 1024)
    assert truth.tolist()[:3] == [286, 294, 385]
    pick = np.r_[280:294, 294:296]            # 16 images, two of them categories
    result = evaluate(network, images[pick], value_width=16, act_frac_bits=8, batch=8,
                      baseline=False)
    assert result["bit_exact_vs_quantized_reference"]
    # Dead images are dropped by default (every layer maps a zero input to zero).
    assert result["skip_empty"] == "auto"
    assert result["inputs_dropped"]["layers_that_drop"] == 30
    assert result["inputs_dropped"]["per_layer"] == [row["inputs_dropped"]
                                                     for row in result["layers"]]
    assert result["layers"][-1]["inputs_dropped"] == 14
    found = gc.categories(np.asarray(result["outputs"]))
    np.testing.assert_array_equal(pick[found], [286, 294])
    # Column mode pays on the sparse activations.
    assert any("csc" in layer["formats"] for layer in result["layers"])


def test_graph_challenge_streamed_from_the_ulx3s_sdram_equals_the_on_chip_run():
    from zeroskip.app.nn.infer import network_config
    from zeroskip.core.extmem import ext_preset
    network, images, _ = gc.load(DATA)
    pick = np.r_[280:294, 294:296]
    options = dict(value_width=16, act_frac_bits=8, batch=8, baseline=False)
    on_chip = evaluate(network, images[pick], **options)
    config = network_config(value_width=16).replace(**ext_preset("ulx3s-sdram").fields())
    streamed = evaluate(network, images[pick], config=config, stream=True, **options)
    assert streamed["bit_exact_vs_quantized_reference"]
    assert streamed["outputs"] == on_chip["outputs"]
    np.testing.assert_array_equal(pick[gc.categories(np.asarray(streamed["outputs"]))],
                                  [286, 294])
    # Every layer's four row blocks are one matrix: the image holds each block once.
    stream = streamed["accelerator"]["data_movement"]["stream"]
    assert stream["ext_words"] < sum(layer.weight.nnz for layer in network.layers) // 2
    assert streamed["cycles_per_inference"] > on_chip["cycles_per_inference"]


def test_graph_challenge_as_onnx_through_infer_gives_the_example_figures(tmp_path, capsys):
    """``zeroskip infer`` on the network exported as ONNX (MatMul, Add, Clip) and
    the example's path agree on every layer's cycles, dense mode and drops."""
    from zeroskip.app.cli import main
    from zeroskip.app.nn.infer import network_config
    from zeroskip.app.nn.onnx_io import save_onnx
    from zeroskip.firmware.cycles import dense_floor
    network, images, _ = gc.load(DATA)
    pick = np.r_[280:296]
    save_onnx(network, tmp_path / "gc.onnx")
    np.save(tmp_path / "x.npy", images[pick].astype(np.float32))
    out = tmp_path / "infer.json"
    assert main(["infer", str(tmp_path / "gc.onnx"), "--inputs", str(tmp_path / "x.npy"),
                 "--value-width", "16", "--act-frac-bits", "8", "--batch", "8",
                 "--no-baseline", "--json", str(out)]) == 0
    assert "inputs dropped (all-zero activations, dense mode drops the same): " in \
        capsys.readouterr().out
    cli = json.loads(out.read_text())
    example = evaluate(network, images[pick], value_width=16, act_frac_bits=8, batch=8,
                       baseline=False)
    for key in ("cycles", "dense_mode_cycles", "inputs_dropped", "inputs_run", "macs"):
        assert [row[key] for row in cli["layers"]] == [row[key] for row in example["layers"]]
    assert cli["inputs_dropped"] == example["inputs_dropped"]
    assert cli["speedup_over_dense_mode"] == example["speedup_over_dense_mode"] > 1
    config = network_config(value_width=16)
    for row in cli["layers"]:
        assert row["dense_mode_cycles"] >= dense_floor(1024, 1024, row["inputs_run"], config)
        assert row["cycles"] < row["dense_mode_cycles"] or row["inputs_run"] == 0
