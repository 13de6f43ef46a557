"""ONNX import: every supported operator, refusals and bad files."""

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from zeroskip.app.cli import main
from zeroskip.app.nn.network import Network
from zeroskip.app.nn.onnx_io import load_onnx, to_onnx
from zeroskip.core.errors import InputError

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)
make_model, save = nn_helpers.make_model, nn_helpers.save

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(6, 4))     # (in, out) as MatMul / Gemm transB=0 store it
B1 = RNG.normal(size=4)
W2 = RNG.normal(size=(3, 4))     # (out, in) for Gemm transB=1
B2 = RNG.normal(size=3)
X = RNG.normal(size=(5, 6)).astype(np.float32)


def ort_run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def all_ops_model():
    nodes = [
        helper.make_node("Identity", ["x"], ["x1"], name="id"),
        helper.make_node("Reshape", ["x1", "shape"], ["x2"], name="reshape"),
        helper.make_node("MatMul", ["x2", "W1"], ["m1"], name="matmul"),
        helper.make_node("Add", ["m1", "B1"], ["a1"], name="add"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu"),
        helper.make_node("Clip", ["r1", "lo", "hi"], ["c1"], name="clip"),
        helper.make_node("Flatten", ["c1"], ["f1"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f1", "W2", "B2"], ["y"], name="gemm", transB=1,
                         alpha=0.5, beta=2.0),
    ]
    inits = {"W1": W1, "B1": B1, "W2": W2, "B2": B2, "lo": np.float32(-1.0),
             "hi": np.float32(0.8), "shape": np.array([-1, 6], dtype=np.int64)}
    inits["shape"] = __import__("onnx").numpy_helper.from_array(inits["shape"], "shape")
    return make_model(nodes, inits)


def test_every_supported_operator_matches_onnxruntime(tmp_path):
    model = all_ops_model()
    network = load_onnx(save(model, tmp_path / "m.onnx"))
    assert [layer.shape for layer in network.layers] == [(4, 6), (3, 4)]
    assert network.layers[0].relu and network.layers[0].clamp == (0.0, pytest.approx(0.8))
    np.testing.assert_allclose(network.forward(X), ort_run(model, X), rtol=1e-5, atol=1e-5)


def test_gemm_trans_b_zero_and_round_trip(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["g"], name="g0"),
             helper.make_node("Relu", ["g"], ["y"], name="r0")]
    model = make_model(nodes, {"W1": W1, "B1": B1}, out_shape=("batch", 4))
    network = load_onnx(save(model, tmp_path / "g.onnx"))
    np.testing.assert_allclose(network.forward(X), ort_run(model, X), rtol=1e-5, atol=1e-5)
    again = to_onnx(network)
    np.testing.assert_allclose(ort_run(again, X), ort_run(model, X), rtol=1e-5, atol=1e-5)


def test_unsupported_operator_is_named(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["g"], name="fc"),
             helper.make_node("Sigmoid", ["g"], ["y"], name="act")]
    path = save(make_model(nodes, {"W1": W1}), tmp_path / "s.onnx")
    with pytest.raises(InputError) as info:
        load_onnx(path)
    assert str(info.value) == (
        f"{path}: unsupported operator Sigmoid at node 1 'act'; supported: Gemm, MatMul, "
        f"Add, Relu, Clip, Flatten, Reshape, Identity")


def test_non_finite_weight(tmp_path):
    bad = W2.copy()
    bad[1, 2] = np.nan
    nodes = [helper.make_node("Gemm", ["x", "W2"], ["y"], name="fc", transB=1)]
    path = save(make_model(nodes, {"W2": bad}), tmp_path / "n.onnx")
    with pytest.raises(InputError, match=r"initializer 'W2' holds a non-finite weight \(nan\) "
                                         r"at flat index 6"):
        load_onnx(path)


def test_dynamic_reshape_is_refused(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
             helper.make_node("Gemm", ["r", "W2"], ["y"], name="fc", transB=1)]
    path = save(make_model(nodes, {"W2": W2}), tmp_path / "d.onnx")
    with pytest.raises(InputError, match="unsupported operator Shape at node 0 'shape'"):
        load_onnx(path)


def test_reshape_target_not_constant(tmp_path):
    from onnx import TensorProto
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
         helper.make_node("Gemm", ["r", "W2"], ["y"], name="fc", transB=1)], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[__import__("onnx").numpy_helper.from_array(W2.astype(np.float32), "W2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = save(model, tmp_path / "r.onnx")
    with pytest.raises(InputError, match="must have exactly one input"):
        load_onnx(path)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file, not an ONNX model"),
    (b"this is not a protobuf at all \xff\xff\xff", "not an ONNX model"),
])
def test_not_onnx(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_onnx(path)


def test_truncated_file(tmp_path):
    data = all_ops_model().SerializeToString()
    path = tmp_path / "t.onnx"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match="not an ONNX model|invalid ONNX model"):
        load_onnx(path)


def test_cli_bad_model_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"garbage")
    x = tmp_path / "x.npy"
    np.save(x, X)
    assert main(["infer", str(path), "--inputs", str(x)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"zeroskip: error: {path}: not an ONNX model")


def test_network_input_checks():
    network = Network(layers=load_network_layers())
    with pytest.raises(InputError, match="each input has 5 features"):
        network.check_inputs(np.zeros((2, 5)))
    with pytest.raises(InputError, match="dtype <U1 is not numeric"):
        network.check_inputs(np.array([["a"] * 6]))


def load_network_layers():
    from zeroskip.app.nn.network import Layer
    return [Layer(name="l", weight=W2.T.T[:, :4] @ np.ones((4, 6)))]
