"""Model preparation: turn the shipped Kokoro v1.0 ONNX export into the graph the engine runs.

Two graph rewrites, both done once with the ``onnx`` package and cached on disk:

* :func:`add_duration_output` exposes the duration predictor's per-token frame counts as an extra graph
  output ``durations`` (int64, ``[1, n_tokens + 2]``), next to ``audio``. Every frame is
  :data:`SAMPLES_PER_FRAME` samples at 24 kHz, so ``durations.sum() * 600 == len(audio)``; the engine uses
  it for word timestamps and to cut audio at token boundaries. The audio is bit-identical to the source's.
* :func:`dequantize` turns the dynamically quantized int8 export (``DynamicQuantizeLinear`` feeding
  ``MatMulInteger`` / ``ConvInteger``, plus ``DynamicQuantizeLSTM``) into a float graph whose weights are the
  de-quantized int8 weights, ``w = (q - zero_point) * scale``: same weights, float kernels (``MatMul``,
  ``Conv``, ``LSTM``), and no per-call activation quantization. By default only the decoder is rewritten:
  the text side (ALBERT, prosody predictor) stays int8 so that durations and the F0/energy curves are
  bit-identical to the int8 model's (see :func:`_dequantize` for why that matters).
* :func:`_convs_as_2d` then runs every float 1-D ``Conv`` as a 2-D one over a height-1 image
  (``Unsqueeze -> Conv [1, k] -> Squeeze``): ONNX Runtime's NCHWc layout and its direct-convolution kernels
  only apply to 2-D convolutions, and the decoder is ~60 % convolutions. Same arithmetic, ~10 % less time.

:func:`prepare_model` chains them (``variant="int8"``: durations only; ``"float"``: durations + de-quantized
+ 2-D convolutions)
and caches the result under ``cache_dir``, keyed by the source's sha256 and the variant, written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

log = logging.getLogger(__name__)

Variant = Literal["int8", "float", "fast"]
VARIANTS: tuple[str, ...] = ("int8", "float", "fast")

#: Name of the added output: predicted frames per token (pads included), int64 ``[1, n_tokens + 2]``.
DURATIONS_OUTPUT = "durations"
#: Audio samples per predicted frame at 24 kHz (the decoder's upsampling; checked in the tests).
SAMPLES_PER_FRAME = 600
SAMPLE_RATE = 24_000

#: Bump when a rewrite changes, so that caches made by older code are not reused.
PREPARE_VERSION = 3

_DOMAIN_MS = "com.microsoft"


class PrepareError(RuntimeError):
    """The source graph does not have the structure the rewrite expects."""


# --------------------------------------------------------------------------------------------- graph helpers


class _Graph:
    """Producer/consumer/initializer indexes over one ``GraphProto`` (top level only)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.g = graph
        self.init = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for o in node.output:
                if o:
                    self.producer[o] = node
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append(node)

    def const(self, name: str) -> np.ndarray:
        if name not in self.init:
            raise PrepareError(f"expected an initializer, got a computed tensor: {name!r}")
        return numpy_helper.to_array(self.init[name])

    def only_consumer(self, name: str, op_type: str) -> onnx.NodeProto:
        nodes = self.consumers.get(name, [])
        if len(nodes) != 1 or nodes[0].op_type != op_type:
            found = [n.op_type for n in nodes]
            raise PrepareError(f"{name!r}: expected one {op_type} consumer, found {found}")
        return nodes[0]

    def produced_by(self, name: str, op_type: str) -> onnx.NodeProto:
        node = self.producer.get(name)
        if node is None or node.op_type != op_type:
            raise PrepareError(f"{name!r}: expected a {op_type} producer, found {node and node.op_type}")
        return node


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _subgraph_inputs(node: onnx.NodeProto) -> Iterable[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope."""
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for sg in graphs:
            for n in sg.node:
                yield from (i for i in n.input if i)
                yield from _subgraph_inputs(n)


def _prune(graph: onnx.GraphProto) -> tuple[int, int]:
    """Drop nodes and initializers no graph output depends on. Returns (nodes, initializers) removed."""
    producer = {o: n for n in graph.node for o in n.output if o}
    live_tensors = {o.name for o in graph.output}
    live_nodes: set[int] = set()
    stack = list(live_tensors)
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in live_nodes:
            continue
        live_nodes.add(id(node))
        for i in (*node.input, *_subgraph_inputs(node)):
            if i and i not in live_tensors:
                live_tensors.add(i)
                stack.append(i)
    keep = [n for n in graph.node if id(n) in live_nodes]
    removed_nodes = len(graph.node) - len(keep)
    del graph.node[:]
    graph.node.extend(keep)
    keep_init = [t for t in graph.initializer if t.name in live_tensors]
    removed_init = len(graph.initializer) - len(keep_init)
    del graph.initializer[:]
    graph.initializer.extend(keep_init)
    keep_vi = [v for v in graph.value_info if v.name in live_tensors]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
    return removed_nodes, removed_init


def _load(src: Path | str) -> onnx.ModelProto:
    return onnx.load(os.fspath(src))


def _save(model: onnx.ModelProto, dst: Path | str) -> None:
    dst = Path(dst)
    if model.ByteSize() > 1_900_000_000:  # protobuf's 2 GB limit; Kokoro is ~90-330 MB
        raise PrepareError("model too large for a single-file ONNX save")
    dst.write_bytes(model.SerializeToString())


# ------------------------------------------------------------------------------------------------ durations


def find_durations_tensor(graph: onnx.GraphProto) -> str:
    """Name of the tensor holding the predicted frames per token (int64, after round/clamp/cast).

    In kokoro/model.py: ``pred_dur = torch.round(duration.sigmoid().sum(-1) / speed).clamp(min=1).long()``.
    The v1.0 export has exactly one ``Sigmoid -> ReduceSum -> Div(speed) -> Round -> Clip -> Cast(int64)``
    chain (``/encoder/predictor/Sigmoid`` ... ``/encoder/Cast``); we follow it from the Sigmoid rather than
    trusting the node names.
    """
    g = _Graph(graph)
    candidates = []
    for node in graph.node:
        if node.op_type != "Round":
            continue
        try:
            div = g.produced_by(node.input[0], "Div")
            rsum = g.produced_by(div.input[0], "ReduceSum")
            g.produced_by(rsum.input[0], "Sigmoid")
            if div.input[1] != "speed":
                continue
            clip = g.only_consumer(node.output[0], "Clip")
            cast = g.only_consumer(clip.output[0], "Cast")
        except PrepareError:
            continue
        if _attrs(cast).get("to") == TensorProto.INT64:
            candidates.append(cast.output[0])
    if len(candidates) != 1:
        raise PrepareError(
            f"expected one Sigmoid->ReduceSum->Div->Round->Clip->Cast chain, found {candidates}"
        )
    return candidates[0]


def _add_duration_output(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    if any(o.name == DURATIONS_OUTPUT for o in graph.output):
        return model
    tensor = find_durations_tensor(graph)
    seq = graph.input[0].type.tensor_type.shape.dim  # tokens: [1, sequence_length]
    dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "n") for d in seq]
    graph.node.append(
        helper.make_node("Identity", [tensor], [DURATIONS_OUTPUT], name="kokoro_api/durations_output")
    )
    graph.output.append(helper.make_tensor_value_info(DURATIONS_OUTPUT, TensorProto.INT64, dims))
    return model


def add_duration_output(src: Path | str, dst: Path | str) -> Path:
    """Write to ``dst`` a copy of ``src`` with the extra int64 output ``durations`` ([1, n_tokens + 2]).

    ``durations[0, i]`` is the number of 600-sample frames token ``i`` (pads included) gets, as decided by
    the duration predictor after ``round(sum(sigmoid) / speed).clamp(min=1)``. The ``audio`` output is
    unchanged (the new output is an ``Identity`` of an existing tensor). Idempotent.
    """
    model = _add_duration_output(_load(src))
    onnx.checker.check_model(model, full_check=False)
    _save(model, dst)
    return Path(dst)


# ----------------------------------------------------------------------------------------------- dequantize


def _dequant(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point.astype(np.float32)) * scale.astype(np.float32)).astype(
        np.float32
    )


def _scale_mul(g: _Graph, int_out: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None]:
    """From an integer op's output: (``Mul(Cast(out [+ int bias]), scales)``, the bias ``Add`` or None)."""
    nodes = g.consumers.get(int_out, [])
    bias_add = None
    if len(nodes) == 1 and nodes[0].op_type == "Add":
        bias_add = nodes[0]
        int_out = bias_add.output[0]
    cast = g.only_consumer(int_out, "Cast")
    if _attrs(cast).get("to") != TensorProto.FLOAT:
        raise PrepareError(f"{cast.name}: expected a cast to float")
    return g.only_consumer(cast.output[0], "Mul"), bias_add


def _weight_scale_name(g: _Graph, out_mul: onnx.NodeProto, act_scale: str) -> str:
    """The weight scale: ``out_mul``'s other factor is ``Mul(activation_scale, weight_scale)``."""
    scales = [i for i in out_mul.input if g.producer.get(i) and g.producer[i].op_type == "Mul"]
    if len(scales) != 1:
        raise PrepareError(f"{out_mul.name}: expected one Mul(activation_scale, weight_scale) factor")
    smul = g.produced_by(scales[0], "Mul")
    others = [i for i in smul.input if i != act_scale]
    if len(others) != 1:
        raise PrepareError(f"{smul.name}: expected Mul(activation_scale, weight_scale)")
    g.const(others[0])
    return others[0]


def _float_bias_name(g: _Graph, bias_add: onnx.NodeProto, int_out: str) -> str:
    """The float bias initializer behind ``Add(int_out, Reshape(Cast(Floor(Div(bias, scale)))))``."""
    other = next(i for i in bias_add.input if i != int_out)
    node = g.producer.get(other)
    while node is not None and node.op_type in ("Reshape", "Cast", "Floor", "Round", "Unsqueeze"):
        node = g.producer.get(node.input[0])
    if node is None or node.op_type != "Div":
        raise PrepareError(f"{bias_add.name}: cannot trace the quantized bias back to its float value")
    bias = g.const(node.input[0])
    if bias.dtype != np.float32 or bias.ndim != 1:
        raise PrepareError(f"{bias_add.name}: expected a 1-D float32 bias, got {bias.dtype}{bias.shape}")
    return node.input[0]


def _ancestors(g: _Graph, tensor: str) -> set[int]:
    """ids of the nodes ``tensor`` depends on."""
    seen: set[int] = set()
    stack = [tensor]
    while stack:
        node = g.producer.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(i for i in (*node.input, *_subgraph_inputs(node)) if i)
    return seen


def find_prosody_tensors(graph: onnx.GraphProto) -> list[str]:
    """Names of the predicted F0 and energy (N) curves: the outputs of the two 1x1, one-channel projections.

    In kokoro/modules.py ``ProsodyPredictor``: ``F0_proj = Conv1d(d_hid // 2, 1, 1)`` and ``N_proj`` alike.
    In the int8 export both are ``ConvInteger`` (weight ``[1, C, 1]``) followed by the scale ``Mul``; the
    decoder's own one-channel convs (``F0_conv``, ``N_conv``) have kernel 3 and are not matched.
    """
    g = _Graph(graph)
    found = []
    for node in graph.node:
        if node.op_type not in ("ConvInteger", "Conv") or node.input[1] not in g.init:
            continue
        shape = tuple(g.init[node.input[1]].dims)
        if len(shape) == 3 and shape[0] == 1 and shape[1] > 1 and shape[2] == 1:
            if node.op_type == "Conv":
                found.append(node.output[0])
            else:
                found.append(_scale_mul(g, node.output[0])[0].output[0])
    if len(found) != 2:
        raise PrepareError(f"expected two one-channel 1x1 projections (F0_proj, N_proj), found {found}")
    return found


def _dequantize(
    model: onnx.ModelProto,
    keep_predictor_int8: bool = True,
    only: Callable[[onnx.NodeProto], bool] | None = None,
) -> dict[str, int]:
    """Rewrite in place; see :func:`dequantize`. ``only``: de-quantize just the nodes it accepts.

    With ``keep_predictor_int8`` (the default) everything the durations and the F0/energy curves depend on
    (ALBERT, the prosody predictor) keeps its int8 kernels, so durations and pitch are bit-identical to the
    int8 model's and only the decoder (most of the compute) runs float. Why: the decoder's harmonic source
    integrates F0 over time (a ``CumSum`` of phase); removing the int8 activation-quantization noise from F0
    changes it by ~1 % of a Hz here and there, which is inaudible but accumulates into a phase drift that
    drops the waveform correlation with the int8 output to ~0.5. With the predictor kept, the correlation
    is > 0.99 (tests/engine/test_prepare.py).
    """
    graph = model.graph
    g = _Graph(graph)
    keep: set[int] = set()
    if keep_predictor_int8:
        for tensor in (find_durations_tensor(graph), *find_prosody_tensors(graph)):
            keep |= _ancestors(g, tensor)
    new_inits: list[onnx.TensorProto] = []
    replaced: dict[int, list[onnx.NodeProto]] = {}  # id(node to drop) -> nodes to insert in its place
    stats = {"MatMulInteger": 0, "ConvInteger": 0, "DynamicQuantizeLSTM": 0}

    taken = set(g.init) | set(g.producer) | {i.name for i in graph.input}
    made: dict[tuple[str | None, ...], str] = {}  # ALBERT reuses its layer's weights 12x: de-quantize once

    def add_init(key: tuple[str | None, ...], hint: str, make: Callable[[], np.ndarray]) -> str:
        if key not in made:
            name, n = hint, 1
            while name in taken:
                n += 1
                name = f"{hint}_{n}"
            taken.add(name)
            made[key] = name
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(make()), name))
        return made[key]

    for node in graph.node:
        op = node.op_type
        if id(node) in keep or (only is not None and op in stats and not only(node)):
            if op in stats:
                stats["kept_int8"] = stats.get("kept_int8", 0) + 1
            continue
        if op in ("MatMulInteger", "ConvInteger"):
            a_q, w_name = node.input[0], node.input[1]
            w_zp_name = node.input[3] if len(node.input) > 3 and node.input[3] else None
            dql = g.produced_by(a_q, "DynamicQuantizeLinear")
            x, act_scale = dql.input[0], dql.output[1]
            out_mul, bias_add = _scale_mul(g, node.output[0])
            w_scale_name = _weight_scale_name(g, out_mul, act_scale)
            w_q = g.const(w_name)
            w_zp = g.const(w_zp_name) if w_zp_name else np.zeros((), w_q.dtype)
            w_scale = g.const(w_scale_name)
            key = (op, w_name, w_zp_name, w_scale_name)
            hint = f"{w_name.removesuffix('_quantized')}_dequantized"
            if op == "MatMulInteger":
                # B is [K, N]; per-column zero points / scales have shape [N] and broadcast as is.
                if bias_add is not None:
                    raise PrepareError(f"{node.name}: unexpected integer bias on MatMulInteger")
                w = add_init(key, hint, lambda: _dequant(w_q, w_scale, w_zp))  # noqa: B023 (called at once)
                new = [helper.make_node("MatMul", [x, w], [out_mul.output[0]], name=node.name)]
            else:
                # W is [M, C/group, k...]; per-channel zero points / scales have shape [M].
                shape = (-1,) + (1,) * (w_q.ndim - 1)
                scale = np.reshape(w_scale, shape) if w_scale.ndim else w_scale
                zp = np.reshape(w_zp, shape) if w_zp.ndim else w_zp
                inputs = [x, add_init(key, hint, lambda: _dequant(w_q, scale, zp))]  # noqa: B023
                if bias_add is not None:
                    bias_name = _float_bias_name(g, bias_add, node.output[0])
                    inputs.append(bias_name)
                new = [helper.make_node("Conv", inputs, [out_mul.output[0]], name=node.name, **_attrs(node))]
            stats[op] += 1
            replaced[id(node)] = new
        elif op == "DynamicQuantizeLSTM":
            # Inputs: X W R B seq_lens initial_h initial_c P W_scale W_zero_point R_scale R_zero_point.
            # W: [dirs, input, 4*hidden], R: [dirs, hidden, 4*hidden] (transposed vs ONNX LSTM), gates iofc.
            ins = list(node.input) + [""] * (12 - len(node.input))
            w_scale, w_zp = g.const(ins[8]), g.const(ins[9])
            r_scale, r_zp = g.const(ins[10]), g.const(ins[11])

            def per_dir(v: np.ndarray) -> np.ndarray:
                return np.reshape(v, (-1, 1, 1)) if v.ndim == 1 else np.reshape(v, (v.shape[0], 1, -1))

            w = add_init(
                ("LSTM.W", ins[1], ins[9], ins[8]),
                f"{ins[1].removesuffix('_quantized')}_dequantized",
                lambda: _dequant(g.const(ins[1]), per_dir(w_scale), per_dir(w_zp)).transpose(0, 2, 1),  # noqa: B023
            )
            r = add_init(
                ("LSTM.R", ins[2], ins[11], ins[10]),
                f"{ins[2].removesuffix('_quantized')}_dequantized",
                lambda: _dequant(g.const(ins[2]), per_dir(r_scale), per_dir(r_zp)).transpose(0, 2, 1),  # noqa: B023
            )
            inputs = [ins[0], w, r, *ins[3:8]]
            while inputs and not inputs[-1]:
                inputs.pop()
            new = [helper.make_node("LSTM", inputs, list(node.output), name=node.name, **_attrs(node))]
            stats[op] += 1
            replaced[id(node)] = new

    if not replaced:  # an fp32 export: already float, the variant differs only by its 2-D convolutions
        log.info("no quantized operators in the source: it is already a float model")
        return stats

    # Rebuild the node list in order. A replacement node takes the place of the integer op; its output
    # is the float tensor the old scale Mul produced, so drop those Muls (they would define it twice).
    drop_outputs = set()
    for new_nodes in replaced.values():
        for n in new_nodes:
            drop_outputs.update(n.output)
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) in replaced:
            nodes.extend(replaced[id(node)])
        elif node.op_type == "Mul" and any(o in drop_outputs for o in node.output):
            continue
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    # The leftovers (DynamicQuantizeLinear, Cast, scale and bias arithmetic) feed nothing now.
    removed_nodes, removed_inits = _prune(graph)
    # A replacement sits where the integer op was: after its float input (which fed the
    # DynamicQuantizeLinear) and before the consumers of the old scale Mul. Check anyway.
    _check_topological(graph)
    stats["removed_nodes"] = removed_nodes
    stats["removed_initializers"] = removed_inits
    return stats


def _convs_as_2d(model: onnx.ModelProto) -> int:
    """Rewrite in place every 1-D ``Conv`` with a float32 initializer weight as a 2-D ``Conv``.

    ``y = Conv1d(x, w)`` becomes ``Squeeze(Conv2d(Unsqueeze(x, 2), w[:, :, None, :]), 2)`` with the kernel,
    stride, dilation and pads given a leading height of 1 (height pads 0). The result is the same numbers;
    what changes is that ONNX Runtime's graph optimizer can put the 2-D convolutions (and the element-wise
    ops between them) in its blocked NCHWc layout. Returns how many convolutions were rewritten.
    """
    graph = model.graph
    g = _Graph(graph)
    axis = "kokoro_api/axis_2"
    new_inits: dict[str, onnx.TensorProto] = {}
    nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        w = g.init.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if w is None or len(w.dims) != 3 or w.data_type != TensorProto.FLOAT:
            nodes.append(node)
            continue
        count += 1
        w2d = f"{w.name}_2d"
        if w2d not in new_inits:
            new_inits[w2d] = numpy_helper.from_array(numpy_helper.to_array(w)[:, :, None, :], w2d)
        attrs = _attrs(node)
        for key in ("kernel_shape", "strides", "dilations"):
            if key in attrs:
                attrs[key] = [1, *attrs[key]]  # type: ignore[misc]
        if "pads" in attrs:
            begin, end = attrs["pads"]  # type: ignore[misc]
            attrs["pads"] = [0, begin, 0, end]
        x4, y4, name = f"{node.output[0]}_x2d", f"{node.output[0]}_y2d", node.name
        nodes.append(helper.make_node("Unsqueeze", [node.input[0], axis], [x4], name=f"{name}_unsqueeze"))
        nodes.append(helper.make_node("Conv", [x4, w2d, *node.input[2:]], [y4], name=f"{name}_2d", **attrs))
        nodes.append(helper.make_node("Squeeze", [y4, axis], [node.output[0]], name=f"{name}_squeeze"))
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(new_inits.values())
        graph.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), axis))
        _prune(graph)  # the 3-D weights feed nothing now
        _check_topological(graph)
    return count


def _check_topological(graph: onnx.GraphProto) -> None:
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        missing = [i for i in node.input if i not in known]
        if missing:
            raise PrepareError(f"{node.name}: inputs {missing} not yet defined (graph not topological)")
        known.update(node.output)


def dequantize(src: Path | str, dst: Path | str) -> dict[str, int]:
    """Write to ``dst`` a float version of the dynamically quantized model ``src``.

    ``DynamicQuantizeLinear + MatMulInteger/ConvInteger (+ int32 bias) + Cast + scale Mul`` becomes
    ``MatMul``/``Conv`` (with the float bias) on ``(q - zero_point) * scale`` weights, and
    ``DynamicQuantizeLSTM`` becomes ``LSTM`` with de-quantized (and transposed) W and R. Other nodes,
    outputs (``durations`` too, if present) and the embedding ``DequantizeLinear`` lookups are kept.
    Returns counts of rewritten operators.
    """
    model = _load(src)
    stats = _dequantize(model)
    onnx.checker.check_model(model, full_check=False)
    _save(model, dst)
    return stats


# ---------------------------------------------------------------------------------------------------- cache


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def source_digest(src: Path, cache_dir: Path) -> str:
    """sha256 of ``src``, remembered in ``cache_dir`` per (path, size, mtime): a warm start skips hashing."""
    st = src.stat()
    stamp_key = hashlib.sha256(f"{src.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:24]
    stamp = cache_dir / "digests" / f"{stamp_key}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(stamp.read_text())
        if data["size"] == st.st_size and data["mtime_ns"] == st.st_mtime_ns:
            return str(data["sha256"])
    digest = _file_sha256(src)
    with contextlib.suppress(OSError):
        _atomic_write_bytes(
            stamp,
            json.dumps(
                {"path": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            ).encode(),
        )
    return digest


def _atomic_write_bytes(dst: Path, data: bytes) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def prepared_path(src: Path, cache_dir: Path, variant: Variant) -> Path:
    """Where :func:`prepare_model` keeps the prepared ``variant`` of ``src`` (it may not exist yet)."""
    digest = source_digest(Path(src), Path(cache_dir))
    tag = variant
    if variant == "fast":  # 7-bit weights without VNNI (engine/static_quant.py); "s": fused Snake op
        from .snake import library
        from .static_quant import weight_bits

        tag = f"fast{weight_bits()}{'s' if library() else ''}"
    return Path(cache_dir) / "prepared" / f"kokoro-{digest[:16]}-{tag}-v{PREPARE_VERSION}.onnx"


def _size_record(dst: Path) -> Path:
    return dst.with_name(dst.name + ".size")


def cached(dst: Path) -> bool:
    """Whether a prepared model in the cache is whole: its size matches the one recorded when it was
    written. A truncated file (a full disk, a copy cut short) is removed so that it is prepared again.
    A file from before sizes were recorded is trusted; if ONNX Runtime cannot load it, the runtime
    discards it and prepares it again (runtime.Runtime.load)."""
    if not dst.is_file():
        return False
    try:
        recorded = int(_size_record(dst).read_text().strip())
    except FileNotFoundError:
        return dst.stat().st_size > 0
    except (OSError, ValueError):
        recorded = -1
    if recorded != dst.stat().st_size:
        log.warning("prepared model %s is truncated (%d bytes, %d recorded): preparing it again",
                    dst.name, dst.stat().st_size, recorded)
        discard(dst)
        return False
    return True


def discard(dst: Path) -> None:
    """Remove a prepared model (and its size record) found broken."""
    for path in (dst, _size_record(dst)):
        with contextlib.suppress(OSError):
            path.unlink()


def prepare_model(src: Path, cache_dir: Path, variant: Variant = "int8") -> Path:
    """Return the path of the prepared model (durations output; ``float``: also de-quantized), cached.

    The cache file name carries the source's sha256 prefix, the variant and :data:`PREPARE_VERSION`; a
    cached start costs one ``stat`` and a small JSON read. Files are written to a temporary name in the
    same directory and ``os.replace``-d into place, so concurrent starts never see a partial model (they
    may both prepare it; the last rename wins with identical content).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    src, cache_dir = Path(src), Path(cache_dir)
    dst = prepared_path(src, cache_dir, variant)
    if cached(dst):
        return dst
    t0 = time.perf_counter()
    try:
        model = _load(src)
    except Exception as exc:  # protobuf DecodeError & co.
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise PrepareError(f"cannot read {src} as an ONNX model (truncated or corrupt?): {first}") from exc
    model = _add_duration_output(model)
    stats: dict[str, int] = {}
    if variant == "float":
        stats = _dequantize(model)
        stats["conv_2d"] = _convs_as_2d(model)
    elif variant == "fast":
        from .static_quant import quantize_generator, weight_bits

        model, stats = quantize_generator(model, weight_bits())
        from .snake import fuse_snake, library

        if library() is not None:
            stats["snake_fused"] = fuse_snake(model)
            _prune(model.graph)
    onnx.checker.check_model(model, full_check=False)
    data = model.SerializeToString()
    _atomic_write_bytes(dst, data)
    _atomic_write_bytes(_size_record(dst), f"{len(data)}\n".encode())
    log.info("prepared %s model %s in %.1f s %s", variant, dst, time.perf_counter() - t0, stats or "")
    # Files an older PREPARE_VERSION made of the same source and variant are never used again (~260 MB).
    for stale in dst.parent.glob(dst.name.replace(f"-v{PREPARE_VERSION}.onnx", "-v*.onnx")):
        if stale != dst:
            with contextlib.suppress(OSError):
                stale.unlink()
                log.info("removed stale prepared model %s", stale)
    return dst


def prepare_in_subprocess(src: Path, cache_dir: Path, variant: Variant = "int8") -> Path:
    """:func:`prepare_model` in a child process, so that a server never keeps its memory.

    Rewriting the graph holds several copies of the weights as protobuf and numpy objects (~1.3 GB at the
    peak for the float variant); freed, that memory stays in the allocator's arenas, and a server that
    prepared its model in-process sat at 2.07 GB RSS when ready instead of 0.8 GB (the podman end-to-end
    run was OOM-killed at its 2 GiB limit). A cache hit costs no process.
    """
    src, cache_dir = Path(src), Path(cache_dir)
    dst = prepared_path(src, cache_dir, variant)
    if cached(dst):
        return dst
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", __name__, os.fspath(src), os.fspath(cache_dir), variant],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise PrepareError(lines[-1] if lines else f"model preparation exited with {proc.returncode}")
    log.info("prepared %s model %s in %.1f s (child process)", variant, dst, time.perf_counter() - t0)
    return Path(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # python -m kokoro_api.engine.prepare SRC CACHE_DIR VARIANT (see prepare_in_subprocess)
    try:
        print(prepare_model(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))  # type: ignore[arg-type]
    except Exception as exc:  # one line for the parent's error message
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        print(first, file=sys.stderr)
        sys.exit(2)
