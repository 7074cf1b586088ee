"""The ``fast`` variant: the generator's residual-block convolutions statically quantized (QDQ).

The shipped int8 export quantizes every convolution *dynamically*: ``DynamicQuantizeLinear`` on the
activation at every call, then ``ConvInteger`` with **uint8** weights, then a float rescale. ONNX Runtime's
CPU ``ConvInteger`` only takes uint8 x uint8, which gets none of the VNNI (u8 x s8 dot product) speed-up,
and the per-call quantization is a full pass over a large tensor. The decoder's generator (HiFi-GAN /
iSTFTNet) is > 90 % of the time, and 48 convolutions in its residual blocks (``resblocks.*`` and
``noise_res.*``, ``convs1``/``convs2``) hold most of it.

For those 48 only, :func:`quantize_generator` de-quantizes the weights (``prepare._dequantize``), then
re-quantizes them with ``onnxruntime.quantization.quantize_static``: QDQ format, per-channel **signed**
int8 weights, uint8 activations with fixed ranges from MinMax calibration on :data:`CALIBRATION_FILE`
(5 sentences x 5 voices, shipped with the package: deterministic, no G2P or voice bundle needed). ONNX
Runtime fuses each ``DequantizeLinear -> Conv -> QuantizeLinear`` into ``QLinearConv`` (u8 x s8 kernels).
Everything else is kept as shipped: the text side (so durations and F0/energy are identical) and the
decoder's frame-rate part (quantizing those convs too broke the waveform's alignment for no gain).

CPUs without a u8 x s8 dot-product instruction (x86 without AVX-512 VNNI / AVX-VNNI) multiply in 16-bit
pairs that can saturate with full 8-bit weights; there the weights use 7 bits (``reduce_range``), as ONNX
Runtime's documentation advises. ``auto`` still only keeps ``fast`` if it is faster *and* sounds like int8
on this machine (engine/choose.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import re
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import onnx

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
#: The generator's residual-block convolutions (node names of the Kokoro v1.0 export, int8 or fp32).
GENERATOR_CONV = re.compile(r"/generator/(resblocks|noise_res)\.\d+/convs[12]\.\d+/")
#: How many the v1.0 generator has: 6 resblocks + 2 noise_res, each 3 x (convs1, convs2).
GENERATOR_CONVS = 48


def has_vnni() -> bool:
    """Whether this CPU has a u8 x s8 dot product (x86 VNNI; ARM's int8 paths do not saturate)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return bool(flags & {"avx512_vnni", "avx_vnni"})
    return False


def weight_bits() -> int:
    """8 with VNNI, else 7 (see the module docstring); part of the prepared file's name."""
    return 8 if has_vnni() else 7


def calibration_cases() -> list[dict]:
    """The shipped calibration inputs: ``voice``, ``text``, ``phonemes``, ``style`` (256 floats)."""
    text = resources.files(__package__).joinpath(CALIBRATION_FILE).read_text(encoding="utf-8")
    return json.loads(text)["cases"]


def calibration_feeds() -> list[dict[str, np.ndarray]]:
    from ..text.g2p import vocab

    table = vocab()
    feeds = []
    for case in calibration_cases():
        ids = [table[c] for c in case["phonemes"] if c in table]
        feeds.append({
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": np.asarray(case["style"], dtype=np.float32).reshape(1, 256),
            "speed": np.array([1.0], dtype=np.float32),
        })
    return feeds


def is_generator_conv(node: onnx.NodeProto) -> bool:
    return node.op_type in ("ConvInteger", "Conv") and bool(GENERATOR_CONV.search(node.name))


def calibrate(model: onnx.ModelProto, tensors: list[str]) -> dict[str, tuple[float, float]]:
    """(min, max) of each of ``tensors`` over the calibration inputs.

    Runs a copy of ``model`` with a ``ReduceMin``/``ReduceMax`` pair per tensor as extra (scalar) outputs,
    with ONNX Runtime's optimizations on, one input at a time. (``quantize_static``'s own calibrator runs
    the graph unoptimized: 2.5x the time and 3 GB peak here.)
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = []
    for i, name in enumerate(tensors):
        for op in ("ReduceMin", "ReduceMax"):
            out = f"kokoro_api/calib/{op}_{i}"
            probe.graph.node.append(helper.make_node(op, [name], [out], name=out, keepdims=0))
            probe.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, []))
            outputs.append(out)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.enable_mem_pattern = False
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    del probe
    lo = np.full(len(tensors), np.inf, dtype=np.float32)
    hi = np.full(len(tensors), -np.inf, dtype=np.float32)
    for feed in calibration_feeds():
        values = np.asarray(sess.run(outputs, feed), dtype=np.float32).reshape(-1, 2)
        lo, hi = np.minimum(lo, values[:, 0]), np.maximum(hi, values[:, 1])
    return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(tensors)}


def quantize_generator(model: onnx.ModelProto, bits: int = 8) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The statically quantized model (``model`` is consumed) and counts; see the module docstring."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    from .prepare import PrepareError, _dequantize

    targets = [n.name for n in model.graph.node if is_generator_conv(n)]
    if len(targets) != GENERATOR_CONVS:
        raise PrepareError(
            f"expected {GENERATOR_CONVS} generator residual convolutions, found {len(targets)}"
        )
    stats = _dequantize(model, only=is_generator_conv)  # no-op for an fp32 export
    convs = [n for n in model.graph.node if n.name in set(targets)]
    if len(convs) != GENERATOR_CONVS or any(n.op_type != "Conv" for n in convs):
        raise PrepareError("the generator's residual convolutions did not de-quantize to float Conv")
    tensors = sorted({t for n in convs for t in (n.input[0], n.output[0])})
    ranges = calibrate(model, tensors)
    with tempfile.TemporaryDirectory(prefix="kokoro-fast-") as tmp:
        cache, out = Path(tmp) / "ranges.json", Path(tmp) / "fast.onnx"
        data = {
            k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()
        }
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        quantize_static(
            model, out, None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_quantize=targets,
            per_channel=True,
            reduce_range=bits < 8,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=cache,
        )
        del model
        quantized = onnx.load(str(out))
    stats["quantize_linear"] = sum(1 for n in quantized.graph.node if n.op_type == "QuantizeLinear")
    return quantized, stats
