"""Small ONNX graphs and networks for the nn tests."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from zeroskip.app.nn.network import Layer, Network


def make_model(nodes, inits, *, in_shape=("batch", 6), out_shape=("batch", 3), opset=13,
               input_name="x", output_name="y"):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(out_shape))],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
                     if not isinstance(v, onnx.TensorProto) else v for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


def tiny_network(seed=0, sizes=(24, 16, 8), density=0.4):
    """A random sparse ReLU network (clamped hidden layer)."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, 0.5, (n_out, n_in)) * (rng.random((n_out, n_in)) < density)
        b = rng.normal(0, 0.1, n_out)
        last = i == len(sizes) - 2
        layers.append(Layer(name=f"fc{i}", weight=w, bias=b, relu=not last,
                            clamp=None if last else (0.0, 2.0)))
    return Network(layers=layers, input_name="x", output_name="y", input_shape=(sizes[0],))


def sparse_inputs(n, features, seed=1, density=0.3):
    rng = np.random.default_rng(seed)
    return rng.random((n, features)) * (rng.random((n, features)) < density)
