"""The ``fast`` variant (static QDQ generator convolutions) on the real model: structure and quality gate.

The gate (engine/quality.py) compares fast's output with int8's on fixed phrases that are not the
calibration set: identical durations, loudness within 1 dB, no clipping, log-mel distance under a limit
set from the float variant's own distance to int8, which this file also measures (the limit is only
meaningful while float stays well inside it). Intelligibility (Whisper WER) is in tests/test_asr.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_prepare import CASES, feeds, run, source  # noqa: F401 (fixtures)

from helpers import cache_dir

GATE_TEXTS = [  # not the calibration sentences (engine/calibration.json)
    ("af_heart", "The museum opens at nine and closes in the evening."),
    ("am_michael", "Could you please send me the report before Friday?"),
    ("bf_emma", "What a wonderful surprise! I never expected to see you here."),
    ("bm_george", "Turn left at the bridge, then follow the river road for two miles."),
]


def session(path, threads: int = 1):
    """A session that can run the fused Snake op (engine/snake.py), as the service's pool does."""
    import onnxruntime as ort

    from kokoro_api.engine import snake

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    snake.register(opts)
    return ort.InferenceSession(
        path if isinstance(path, bytes) else str(path), opts, providers=["CPUExecutionProvider"]
    )


@pytest.fixture(scope="module")
def prepared(source) -> dict:  # noqa: F811
    from kokoro_api.engine.prepare import prepare_in_subprocess

    return {v: prepare_in_subprocess(source, cache_dir(), v) for v in ("int8", "float", "fast")}


@pytest.fixture(scope="module")
def gate_feeds(feeds) -> list[dict[str, np.ndarray]]:  # noqa: F811
    from helpers import voices_path
    from kokoro_api.text.g2p import Phonemizer, vocab

    ph, table, voices = Phonemizer(), vocab(), np.load(voices_path())
    out = list(feeds)
    for voice, text in GATE_TEXTS:
        ids = [table[c] for c in ph.phonemes(text, british=voice.startswith("b")) if c in table]
        out.append({
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": voices[voice][len(ids) - 1].reshape(1, -1).astype(np.float32),
            "speed": np.array([1.0], dtype=np.float32),
        })
    return out


@pytest.fixture(scope="module")
def outputs(prepared, gate_feeds) -> dict[str, list[dict[str, np.ndarray]]]:
    return {v: [run(sess, f) for f in gate_feeds] for v, sess in
            ((v, session(p)) for v, p in prepared.items())}


def test_fast_quantizes_exactly_the_generator_residual_convs(prepared):
    import onnx

    from kokoro_api.engine.static_quant import GENERATOR_CONVS, is_generator_conv

    nodes = onnx.load(os.fspath(prepared["fast"])).graph.node
    by_name = {o: n for n in nodes for o in n.output}
    convs = [n for n in nodes if is_generator_conv(n)]
    assert len(convs) == GENERATOR_CONVS and all(n.op_type == "Conv" for n in convs)
    for conv in convs:  # activation and weight each come through a DequantizeLinear; output re-quantized
        assert by_name[conv.input[0]].op_type == "DequantizeLinear"
        assert by_name[conv.input[1]].op_type == "DequantizeLinear"
    quantized = {n.input[0] for n in nodes if n.op_type == "QuantizeLinear"}
    assert {c.output[0] for c in convs} <= quantized
    # everything else as shipped: the text side, the frame-rate decoder, noise_convs, conv_post
    shipped = [n for n in onnx.load(os.fspath(prepared["int8"])).graph.node if n.op_type == "ConvInteger"]
    kept = [n for n in nodes if n.op_type == "ConvInteger"]
    assert len(kept) == len(shipped) - GENERATOR_CONVS > 0


def test_onnxruntime_fuses_qlinearconv(prepared, tmp_path):
    """The point of the exercise: ORT turns each DQ -> Conv -> Q into one QLinearConv (u8 x s8 kernels)."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    opts.log_severity_level = 3
    from kokoro_api.engine import snake

    snake.register(opts)
    ort.InferenceSession(str(prepared["fast"]), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath, load_external_data=False).graph.node]
    assert ops.count("QLinearConv") >= 48


def test_quality_gate_fast_vs_int8(outputs):
    from kokoro_api.engine.quality import MAX_LOG_MEL_DB, compare

    report, float_dist = [], []
    for a, f, q in zip(outputs["int8"], outputs["float"], outputs["fast"], strict=True):
        fast = compare(a["audio"], a["durations"], q["audio"], q["durations"])
        flt = compare(a["audio"], a["durations"], f["audio"], f["durations"])
        float_dist.append(flt.log_mel_db)
        report.append((fast.as_dict(), round(flt.log_mel_db, 2)))
        assert int(q["durations"].sum()) * 600 == q["audio"].size
        assert fast.problems == [], report
        assert fast.correlation > 0.8, report  # ~0.9-0.96; 0.5 was what F0 phase drift looked like
    # the limit is about twice float's distance from int8: float must stay clearly inside it
    assert max(float_dist) < MAX_LOG_MEL_DB / 1.5, report
    print(report)


def test_quality_gate_catches_broken_audio(outputs):
    """The gate can fail: noise, a louder copy, clipping and other durations are caught."""
    from kokoro_api.engine.quality import compare

    a = outputs["int8"][0]
    audio, dur = a["audio"].reshape(-1), a["durations"]
    rng = np.random.default_rng(0)
    rms = float(np.sqrt(np.mean(audio**2)))
    cases = {
        "noise": (audio + rng.normal(0, 0.3 * rms, audio.size).astype(np.float32), dur, "log-mel"),
        "louder": (audio * 1.2, dur, "loudness"),
        "clipped": (np.clip(audio * 2.5, -1, 1), dur, "clipping"),
        "durations": (audio, dur + 1, "durations"),
    }
    for name, (out, d, expected) in cases.items():
        problems = compare(audio, dur, out, d).problems
        assert any(expected in p for p in problems), (name, problems)


def test_calibration_data_is_shipped_and_fixed():
    from kokoro_api.engine.static_quant import calibration_cases, calibration_feeds

    cases = calibration_cases()
    assert len(cases) >= 10 and len({c["voice"] for c in cases}) >= 5
    one, two = calibration_feeds(), calibration_feeds()
    for x, y in zip(one, two, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert all(f["tokens"].shape[1] > 20 and f["style"].shape == (1, 256) for f in one)


def test_fused_snake_is_built_and_used(prepared):
    """The normal install builds the custom op (setup.py); fast then has its 48 Snake chains fused."""
    import onnx

    from kokoro_api.engine.snake import DOMAIN, library

    assert library() is not None, "the _snake extension was not built (pip install -e . needs a C compiler)"
    assert prepared["fast"].name.split("-")[2].endswith("s")  # the file name records the fusion
    nodes = onnx.load(os.fspath(prepared["fast"])).graph.node
    assert sum(1 for n in nodes if n.domain == DOMAIN and n.op_type == "Snake") == 48
    assert sum(1 for n in nodes if n.op_type == "Sin") == 3  # harmonic source, its phase, the STFT


def test_fused_snake_matches_the_onnx_chain(prepared, feeds):  # noqa: F811
    """On the real int8 graph (same Snake chains, nothing else changed): fused vs unfused output."""
    import onnx

    from kokoro_api.engine import snake
    from kokoro_api.engine.prepare import _prune

    model = onnx.load(os.fspath(prepared["int8"]))
    assert snake.fuse_snake(model) == 48
    _prune(model.graph)
    assert not [n for n in model.graph.node if "generator/resblocks" in n.name and n.op_type == "Sin"]
    fused = session(model.SerializeToString(), threads=2)
    plain = session(prepared["int8"])
    for feed in feeds[:2]:
        a = run(plain, feed)
        b = dict(zip([o.name for o in fused.get_outputs()], fused.run(None, feed), strict=True))
        np.testing.assert_array_equal(a["durations"], b["durations"])
        # vector sinf (~4 ulp) instead of ORT's: the int8 activations downstream round a few values
        # differently, so close but not bit-identical
        assert np.corrcoef(a["audio"].reshape(-1), b["audio"].reshape(-1))[0, 1] > 0.99


def test_without_the_library_fast_is_pure_onnx(tmp_path, monkeypatch):
    """No compiler at install time, or a library that does not load: nothing breaks, nothing is fused."""
    from kokoro_api.engine import snake
    from kokoro_api.engine.model import resolve_model
    from kokoro_api.engine.prepare import prepared_path

    src = resolve_model(None, cache_dir())
    try:
        monkeypatch.setattr(snake, "_candidates", lambda: [tmp_path / "_snake.so"])
        snake.library.cache_clear()
        assert snake.library() is None
        assert prepared_path(src, cache_dir(), "fast").name.split("-")[2] in ("fast8", "fast7")
        (tmp_path / "_snake.so").write_bytes(b"\x7fELF not really a library")
        snake.library.cache_clear()
        assert snake.library() is None  # a broken file is refused with a warning, not a crash
        import onnxruntime as ort

        opts = ort.SessionOptions()
        snake.register(opts)  # no-op
    finally:
        monkeypatch.undo()
        snake.library.cache_clear()
