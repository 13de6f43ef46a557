"""ONNX front end: read a feed-forward network, and write one back.

:func:`load_onnx` accepts a graph made of ``Gemm``, ``MatMul``, ``Add``,
``Relu``, ``Clip``, ``Flatten``, ``Reshape`` and ``Identity`` nodes (plus
``Constant`` nodes holding their operands) forming one chain from the input
to the output. Anything else is refused with one line naming the operator,
the node and what is supported. :func:`to_onnx` writes a :class:`Network` as
``Gemm``/``Relu``/``Clip`` nodes (what the examples and the onnxruntime
baseline use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroskip.app.nn.network import Layer, Network
from zeroskip.core.errors import InputError

__all__ = ["SUPPORTED_OPS", "load_onnx", "to_onnx", "save_onnx"]

#: Operators of the data path the front end understands.
SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Relu", "Clip", "Flatten", "Reshape", "Identity")


def _onnx():
    import onnx
    return onnx


def _node_label(node, index):
    return f"node {index} {node.name!r}" if node.name else f"node {index}"


def _read_model(path):
    onnx = _onnx()
    from google.protobuf.message import DecodeError
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise InputError(f"{path}: empty file, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise InputError(f"{path}: not an ONNX model (or truncated): {error}") from None
    if not model.HasField("graph") or not model.graph.node:
        raise InputError(f"{path}: not an ONNX model (or truncated): no graph nodes")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "invalid"
        raise InputError(f"{path}: invalid ONNX model: {first}") from None
    return model


def _constants(model, path):
    """Initializers and ``Constant`` node outputs, float64 or int64 arrays."""
    from onnx import numpy_helper
    values = {}
    for init in model.graph.initializer:
        values[init.name] = numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    for name, value in values.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int(np.flatnonzero(~np.isfinite(value.reshape(-1)))[0])
            raise InputError(f"{path}: initializer {name!r} holds a non-finite weight "
                             f"({value.reshape(-1)[bad]}) at flat index {bad}")
    return values


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _input_shape(model, path, constants):
    graph_inputs = [i for i in model.graph.input if i.name not in constants]
    if len(graph_inputs) != 1:
        names = ", ".join(i.name for i in graph_inputs) or "none"
        raise InputError(f"{path}: the network must have exactly one input, not {names}")
    value = graph_inputs[0]
    dims = []
    for dim in value.type.tensor_type.shape.dim:
        dims.append(int(dim.dim_value) if dim.HasField("dim_value") else None)
    if not dims:
        raise InputError(f"{path}: input {value.name!r} has no declared shape")
    return value.name, tuple(dims)


class _Chain:
    """The tensor flowing along the chain: its name and feature count."""

    def __init__(self, name, features, path):
        self.name = name
        self.features = features       # None: not resolved yet
        self.path = path
        self.layers = []
        self.open = None               # the layer still taking Add / Relu / Clip

    def fail(self, label, message):
        raise InputError(f"{self.path}: {label}: {message}")


def _weight(chain, label, constants, name):
    if name not in constants:
        chain.fail(label, f"operand {name!r} is not a constant initializer (only weights "
                          f"stored in the model are supported)")
    value = np.asarray(constants[name])
    if value.dtype.kind not in "fiu":
        chain.fail(label, f"operand {name!r} has dtype {value.dtype}, not a number")
    return value.astype(np.float64)


def _linear(chain, node, label, constants):
    attrs = _attrs(node)
    if node.op_type == "Gemm":
        if len(node.input) < 2:
            chain.fail(label, "Gemm needs inputs A and B")
        if node.input[0] != chain.name:
            chain.fail(label, "Gemm's first input must be the activation (A); weights as A "
                              "are not supported")
        if attrs.get("transA", 0):
            chain.fail(label, "Gemm with transA=1 is not supported (activations must be "
                              "(batch, features))")
        b = _weight(chain, label, constants, node.input[1])
        if b.ndim != 2:
            chain.fail(label, f"Gemm weight {node.input[1]!r} has shape {b.shape}, not 2-D")
        weight = b if attrs.get("transB", 0) else b.T
        weight = weight * float(attrs.get("alpha", 1.0))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            c = _weight(chain, label, constants, node.input[2]) * float(attrs.get("beta", 1.0))
            bias = _broadcast_bias(chain, label, c, weight.shape[0])
    else:
        if len(node.input) != 2 or node.input[0] != chain.name:
            chain.fail(label, "MatMul must multiply the activation (first input) by a "
                              "constant weight")
        b = _weight(chain, label, constants, node.input[1])
        if b.ndim != 2:
            chain.fail(label, f"MatMul weight {node.input[1]!r} has shape {b.shape}, not 2-D")
        weight, bias = b.T, None
    if chain.features is not None and weight.shape[1] != chain.features:
        chain.fail(label, f"weight takes {weight.shape[1]} features but the activation has "
                          f"{chain.features}")
    layer = Layer(name=node.name or node.output[0], weight=weight, bias=bias)
    chain.layers.append(layer)
    chain.open = layer
    chain.features = weight.shape[0]


def _broadcast_bias(chain, label, c, outputs):
    flat = c.reshape(-1)
    if flat.size == 1:
        return np.full(outputs, float(flat[0]))
    if flat.size != outputs or (c.ndim == 2 and c.shape[0] != 1):
        chain.fail(label, f"bias of shape {c.shape} does not broadcast to {outputs} outputs")
    return flat.copy()


def _add(chain, node, label, constants):
    if chain.open is None or chain.open.relu or chain.open.clamp is not None:
        chain.fail(label, "Add is supported only as the bias of a Gemm or MatMul, before "
                          "its activation")
    others = [name for name in node.input if name != chain.name]
    if len(node.input) != 2 or len(others) != 1:
        chain.fail(label, "Add must add a constant bias to the activation")
    c = _weight(chain, label, constants, others[0])
    bias = _broadcast_bias(chain, label, c, chain.features)
    layer = chain.open
    layer.bias = bias if layer.bias is None else layer.bias + bias


def _clip_bounds(chain, node, label, constants):
    attrs = _attrs(node)
    lo, hi = attrs.get("min", -np.inf), attrs.get("max", np.inf)
    for position in (1, 2):
        if len(node.input) > position and node.input[position]:
            value = _weight(chain, label, constants, node.input[position]).reshape(-1)
            if value.size != 1:
                chain.fail(label, f"Clip bound {node.input[position]!r} is not a scalar")
            if position == 1:
                lo = float(value[0])
            else:
                hi = float(value[0])
    if lo > hi:
        chain.fail(label, f"Clip bounds [{lo}, {hi}] are empty")
    return float(lo), float(hi)


def _activation(chain, node, label, constants):
    if chain.open is None:
        chain.fail(label, f"{node.op_type} before the first Gemm/MatMul is not supported")
    layer = chain.open
    if node.op_type == "Relu":
        if layer.clamp is not None:
            lo, hi = layer.clamp
            layer.clamp = (max(lo, 0.0), max(hi, 0.0))
        layer.relu = True
        return
    lo, hi = _clip_bounds(chain, node, label, constants)
    if layer.clamp is not None:
        lo, hi = max(lo, layer.clamp[0]), min(hi, layer.clamp[1])
    if layer.relu:
        lo, hi = max(lo, 0.0), max(hi, 0.0)
    layer.clamp = (lo, hi)


def _reshape(chain, node, label, constants, input_dims):
    if node.op_type == "Reshape":
        if len(node.input) < 2 or node.input[1] not in constants:
            chain.fail(label, "cannot resolve a dynamic shape: Reshape's target shape is not "
                              "a constant")
        target = [int(v) for v in np.asarray(constants[node.input[1]]).reshape(-1)]
        if len(target) != 2:
            chain.fail(label, f"Reshape to {target} is not supported (only to "
                              f"(batch, features))")
        features = target[1]
        if features == 0 or features == -1:
            if features == 0 and target[0] != -1:
                features = chain.features       # copies the feature dimension
            else:
                features = None
        if features is not None and chain.features is not None and features != chain.features:
            chain.fail(label, f"Reshape to {features} features, but the activation has "
                              f"{chain.features}")
        if features is not None:
            chain.features = features
    elif node.op_type == "Flatten":
        axis = _attrs(node).get("axis", 1)
        if axis != 1:
            chain.fail(label, f"Flatten with axis={axis} is not supported (only axis=1)")
    if chain.open is not None and (node.op_type in ("Flatten", "Reshape")):
        chain.open = None


def load_onnx(path):
    """Read a feed-forward network from an ONNX file.

    Returns
    -------
    Network

    Raises
    ------
    InputError
        A file that is not ONNX or is truncated, an unsupported operator
        (naming it, its node and the supported ones), a graph that is not one
        chain, shapes it cannot resolve, or a weight that is not finite.
    """
    path = Path(path)
    model = _read_model(path)
    constants = _constants(model, path)
    input_name, dims = _input_shape(model, path, constants)
    known = [d for d in dims[1:]]
    features = int(np.prod(known)) if known and all(d is not None for d in known) else None
    chain = _Chain(input_name, features, path)
    for index, node in enumerate(model.graph.node):
        label = _node_label(node, index)
        if node.op_type == "Constant":
            continue
        if node.op_type not in SUPPORTED_OPS:
            raise InputError(f"{path}: unsupported operator {node.op_type} at {label}; "
                             f"supported: {', '.join(SUPPORTED_OPS)}")
        if chain.name not in node.input:
            chain.fail(label, f"{node.op_type} does not take the running activation "
                              f"{chain.name!r}: only a single chain of layers is supported")
        if node.op_type in ("Gemm", "MatMul"):
            _linear(chain, node, label, constants)
        elif node.op_type == "Add":
            _add(chain, node, label, constants)
        elif node.op_type in ("Relu", "Clip"):
            _activation(chain, node, label, constants)
        elif node.op_type in ("Flatten", "Reshape"):
            _reshape(chain, node, label, constants, dims)
        chain.name = node.output[0]
    outputs = [o.name for o in model.graph.output]
    if not chain.layers:
        raise InputError(f"{path}: the graph has no Gemm or MatMul layer")
    if outputs != [chain.name]:
        raise InputError(f"{path}: the graph's output {', '.join(outputs)} is not the end of "
                         f"its chain of layers ({chain.name!r})")
    first = chain.layers[0].shape[1]
    if features is not None and features != first:
        raise InputError(f"{path}: input {input_name!r} has {features} features but the first "
                         f"layer takes {first}")
    return Network(layers=chain.layers, input_name=input_name, output_name=outputs[0],
                   input_shape=tuple(d if d is not None else -1 for d in dims[1:]) or (first,),
                   name=path.stem)


def to_onnx(network, *, opset=13):
    """The network as an ONNX model (``Gemm`` with ``transB=1``, ``Relu``, ``Clip``).

    Weights are stored dense in float32 (zeros included), which is how a
    pruned network usually reaches a CPU runtime.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits = [], []
    current = network.input_name
    for i, layer in enumerate(network.layers):
        w = layer.dense_weight().astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        inputs = [current, f"W{i}"]
        if layer.bias is not None:
            inits.append(numpy_helper.from_array(np.asarray(layer.bias, np.float32), f"B{i}"))
            inputs.append(f"B{i}")
        out = f"gemm{i}"
        nodes.append(helper.make_node("Gemm", inputs, [out], name=f"{layer.name}", transB=1))
        if layer.relu:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"], name=f"relu{i}"))
            out = f"relu{i}"
        if layer.clamp is not None:
            lo, hi = layer.clamp
            names = []
            for tag, bound in (("lo", lo), ("hi", hi)):
                name = f"clip{i}_{tag}"
                bound = np.float32(np.clip(bound, -3.4e38, 3.4e38))
                inits.append(numpy_helper.from_array(np.asarray(bound), name))
                names.append(name)
            nodes.append(helper.make_node("Clip", [out] + names, [f"clip{i}"], name=f"clip{i}"))
            out = f"clip{i}"
        current = out
    final = network.output_name
    nodes.append(helper.make_node("Identity", [current], [final], name="output"))
    graph = helper.make_graph(
        nodes, network.name,
        [helper.make_tensor_value_info(network.input_name, TensorProto.FLOAT,
                                       ["batch", network.inputs])],
        [helper.make_tensor_value_info(final, TensorProto.FLOAT, ["batch", network.outputs])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="zeroskip")
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model


def save_onnx(network, path, *, opset=13):
    """Write :func:`to_onnx` of ``network`` to ``path``."""
    model = to_onnx(network, opset=opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(path)
    return path
