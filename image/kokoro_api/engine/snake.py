"""The fused Snake activation: find the custom-op library, check it works, rewrite the graph to use it.

Kokoro's generator applies ``snake(x) = x + 1/alpha * sin(alpha * x)^2`` 48 times; exported it is five
element-wise ONNX nodes, five passes over a large tensor, and ORT's ``Sin`` runs single-threaded.
``csrc/snake.c`` computes it in one pass over the intra-op thread pool. It is built by the normal install
(``pip install .``, an optional setuptools extension: no compiler, no library) as ``_snake*.so`` in this
package. :func:`fuse_snake` replaces each chain by one ``kokoro_api.Snake`` node; it is only applied when
:func:`library` loads and computes correctly here, and the prepared file's name says whether it was
(engine/prepare.py), so a machine without the library runs the pure-ONNX graph.
"""

from __future__ import annotations

import importlib.machinery
import logging
from functools import cache
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

DOMAIN = "kokoro_api"
OP = "Snake"


def _candidates() -> list[Path]:
    here = Path(__file__).parent
    return [here / f"_snake{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]


@cache
def library() -> Path | None:
    """The built custom-op library, if it exists, loads into ONNX Runtime and matches numpy; else None."""
    path = next((p for p in _candidates() if p.is_file()), None)
    if path is None:
        return None
    try:
        import onnxruntime as ort

        x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, None])
        a = helper.make_tensor_value_info("alpha", onnx.TensorProto.FLOAT, [1, 3, 1])
        y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, None])
        node = helper.make_node(OP, ["x", "alpha"], ["y"], domain=DOMAIN)
        graph = helper.make_graph([node], "snake-check", [x, a], [y])
        model = helper.make_model(
            graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
        )
        opts = ort.SessionOptions()
        opts.register_custom_ops_library(str(path))
        opts.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        xs = np.random.default_rng(0).normal(0, 2, (1, 3, 1000)).astype(np.float32)
        alpha = np.array([0.5, 1.0, 3.0], np.float32).reshape(1, 3, 1)
        got = sess.run(None, {"x": xs, "alpha": alpha})[0]
        want = xs + np.sin(alpha * xs) ** 2 / alpha
        if not np.allclose(got, want, atol=1e-4, rtol=1e-4):
            log.warning("fused Snake library %s computes wrong values; not used", path)
            return None
    except Exception as exc:  # any load or run failure means: run the pure-ONNX graph
        log.warning("fused Snake library %s cannot be used (%s)", path, str(exc).splitlines()[0][:200])
        return None
    return path


def register(opts) -> None:
    """Let a session resolve ``kokoro_api.Snake`` (a no-op when the library is not usable)."""
    path = library()
    if path is not None:
        opts.register_custom_ops_library(str(path))


def fuse_snake(model: onnx.ModelProto) -> int:
    """Replace ``Add(x, Mul(1/alpha, Pow(Sin(Mul(alpha, x)), 2)))`` chains with one ``Snake`` node (in
    place; ``1/alpha`` a ``Reciprocal`` node or its folded initializer). Returns how many were fused; the
    left-over nodes are pruned by the caller."""
    from .prepare import _Graph

    graph = model.graph
    g = _Graph(graph)
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def value(name: str) -> np.ndarray | None:
        if name in g.init:
            return numpy_helper.to_array(g.init[name])
        if name in constants:
            return numpy_helper.to_array(constants[name].attribute[0].t)
        return None

    def single(name: str, op: str) -> onnx.NodeProto | None:
        nodes = g.consumers.get(name, [])
        return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op else None

    fused: dict[int, onnx.NodeProto] = {}  # id(final Add) -> Snake node
    for sin in graph.node:
        if sin.op_type != "Sin" or g.producer.get(sin.input[0]) is None:
            continue
        scale = g.producer[sin.input[0]]
        if scale.op_type != "Mul":
            continue
        alpha = next((i for i in scale.input if i in g.init and len(g.init[i].dims) == 3), None)
        if alpha is None:
            continue
        x = next(i for i in scale.input if i != alpha)
        power = single(sin.output[0], "Pow")
        if power is None or (exp := value(power.input[1])) is None or float(exp) != 2.0:
            continue
        mul = single(power.output[0], "Mul")
        if mul is None:
            continue
        inv = next(i for i in mul.input if i != power.output[0])
        rec = g.producer.get(inv)
        if rec is not None:  # Reciprocal(alpha) as a node
            if rec.op_type != "Reciprocal" or rec.input[0] != alpha:
                continue
        elif (r := value(inv)) is None or not np.allclose(r, 1.0 / value(alpha), rtol=1e-5):
            continue  # the export folds 1/alpha into an initializer
        add = single(mul.output[0], "Add")
        if add is None or x not in add.input:
            continue
        fused[id(add)] = helper.make_node(
            OP, [x, alpha], [add.output[0]], name=f"{add.name}/kokoro_api_snake", domain=DOMAIN
        )
    if not fused:
        return 0
    nodes = [fused.get(id(n), n) for n in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return len(fused)
