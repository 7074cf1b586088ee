"""Model preparation on the real Kokoro v1.0 int8 export: durations output, float variant, cache, errors.

No mocks: the source is the assembled int8 model; prepared files go to the shared cache (as the service's
do) except where a test needs its own (mtime, corrupt source).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import cache_dir, voices_path

SAMPLES_PER_FRAME = 600
# Fixed inputs: (voice, text). Short and medium, American and British.
CASES = [
    ("af_heart", "The quick brown fox jumps over the lazy dog."),
    ("af_heart", "Hello there! How are you doing today?"),
    ("am_michael", "The quick brown fox jumps over the lazy dog."),
    (
        "bf_emma",
        "Kokoro is an open-weight text to speech model with eighty two million parameters, "
        "and it runs fast on a laptop.",
    ),
]


@pytest.fixture(scope="module")
def source() -> Path:
    from kokoro_api.engine.model import resolve_model

    return resolve_model(None, cache_dir())


@pytest.fixture(scope="module")
def prepared(source) -> dict[str, Path]:
    from kokoro_api.engine.prepare import prepare_model

    return {v: prepare_model(source, cache_dir(), v) for v in ("int8", "float")}


@pytest.fixture(scope="module")
def feeds() -> list[dict[str, np.ndarray]]:
    from kokoro_api.text.g2p import Phonemizer, vocab

    ph, table = Phonemizer(), vocab()
    voices = np.load(voices_path())
    out = []
    for voice, text in CASES:
        ids = [table[c] for c in ph.phonemes(text)]
        out.append(
            {
                "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                "style": voices[voice][len(ids) - 1].reshape(1, -1).astype(np.float32),
                "speed": np.array([1.0], dtype=np.float32),
            }
        )
    return out


def session(path: Path | bytes, outputs: list[str] | None = None):
    import onnxruntime as ort

    if outputs:  # expose intermediate tensors for comparison
        import onnx
        from onnx import TensorProto, helper

        model = onnx.load(os.fspath(path))
        for name in outputs:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        path = model.SerializeToString()
    from kokoro_api.engine import snake

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    snake.register(opts)  # the fast variant's fused Snake op
    return ort.InferenceSession(
        path if isinstance(path, bytes) else str(path), opts, providers=["CPUExecutionProvider"]
    )


def run(sess, feed) -> dict[str, np.ndarray]:
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.reshape(-1), b.reshape(-1))[0, 1])


def log_spectrogram(x: np.ndarray, n: int = 512, hop: int = 128) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x.reshape(-1), n)[::hop] * np.hanning(n)
    return np.log1p(np.abs(np.fft.rfft(frames, axis=1)))


def test_durations_output_and_audio_unchanged(source, prepared, feeds):
    src, int8 = session(source), session(prepared["int8"])
    assert [o.name for o in src.get_outputs()] == ["audio"]
    assert [o.name for o in int8.get_outputs()] == ["audio", "durations"]
    for feed in feeds:
        ref, out = run(src, feed), run(int8, feed)
        np.testing.assert_array_equal(out["audio"], ref["audio"])  # bit-identical
        durations = out["durations"]
        assert durations.dtype == np.int64
        assert durations.shape == (1, feed["tokens"].shape[1])
        assert (durations >= 1).all()
        assert int(durations.sum()) * SAMPLES_PER_FRAME == out["audio"].size


def test_durations_follow_speed(prepared, feeds):
    sess = session(prepared["int8"])
    feed = dict(feeds[0])
    slow = run(sess, {**feed, "speed": np.array([0.5], np.float32)})
    normal = run(sess, feed)
    assert slow["durations"].sum() > 1.7 * normal["durations"].sum()
    assert int(slow["durations"].sum()) * SAMPLES_PER_FRAME == slow["audio"].size


def test_float_variant_matches_int8(prepared, feeds):
    """Same prosody (bit-identical durations, F0, energy); the float decoder's waveform tracks int8's.

    The float decoder drops the int8 *activation* quantization noise, so the waveforms are not identical:
    correlation is 0.965-0.99 depending on text and voice (0.99 or more for short sentences, lower for
    long ones, where more quantization noise has been removed), and the log-spectrograms agree to >= 0.985.
    Before the predictor was kept int8, F0 drift (integrated into phase) put the correlation at ~0.5.
    """
    import onnx

    from kokoro_api.engine.prepare import find_prosody_tensors

    prosody = find_prosody_tensors(onnx.load(os.fspath(prepared["int8"])).graph)
    int8 = session(prepared["int8"], prosody)
    flt = session(prepared["float"], prosody)
    assert [o.name for o in flt.get_outputs()][:2] == ["audio", "durations"]
    wave, spec = [], []
    for feed in feeds:
        a, b = run(int8, feed), run(flt, feed)
        np.testing.assert_array_equal(b["durations"], a["durations"])
        for name in prosody:
            np.testing.assert_array_equal(b[name], a[name])
        assert b["audio"].shape == a["audio"].shape
        wave.append(corr(a["audio"], b["audio"]))
        spec.append(corr(log_spectrogram(a["audio"]), log_spectrogram(b["audio"])))
        rms_a, rms_b = (float(np.sqrt(np.mean(np.square(x["audio"])))) for x in (a, b))
        assert 0.95 < rms_b / rms_a < 1.05
    assert wave[0] >= 0.98, wave  # af_heart, one short sentence
    assert min(wave) >= 0.96, wave
    assert np.mean(wave) >= 0.975, wave
    assert min(spec) >= 0.985, spec


def test_float_variant_has_float_decoder(prepared):
    import onnx

    ops = {n.op_type for n in onnx.load(os.fspath(prepared["float"])).graph.node if "generator" in n.name}
    assert "Conv" in ops and "ConvInteger" not in ops and "DynamicQuantizeLinear" not in ops


def test_convs_run_as_2d_with_the_same_output(source, prepared, feeds):
    """The float variant runs its 1-D convolutions as 2-D ones (NCHWc kernels); the audio is unchanged."""
    import onnx

    from kokoro_api.engine.prepare import _add_duration_output, _convs_as_2d, _dequantize

    graph = onnx.load(os.fspath(prepared["float"])).graph
    weights = {t.name: t for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in weights]
    assert convs and all(len(weights[n.input[1]].dims) == 4 for n in convs if "generator" in n.name)

    model = _add_duration_output(onnx.load(os.fspath(source)))
    _dequantize(model)
    one_d = session(model.SerializeToString())
    assert _convs_as_2d(model) >= 70  # the decoder's convolutions
    assert _convs_as_2d(model) == 0  # idempotent: nothing 1-D left
    two_d = session(prepared["float"])
    for feed in feeds[:2]:
        a, b = run(one_d, feed), run(two_d, feed)
        np.testing.assert_array_equal(b["durations"], a["durations"])
        assert a["audio"].shape == b["audio"].shape
        assert corr(a["audio"], b["audio"]) > 0.9999
        np.testing.assert_allclose(b["audio"], a["audio"], atol=2e-3)


def test_cache_is_reused(source, tmp_path):
    from kokoro_api.engine.prepare import prepare_model

    first = prepare_model(source, tmp_path, "int8")
    stamp = first.stat().st_mtime_ns
    again = prepare_model(source, tmp_path, "int8")
    assert again == first
    assert again.stat().st_mtime_ns == stamp  # not rewritten
    leftovers = [p.name for p in first.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
    assert prepare_model(source, tmp_path, "float") != first  # per-variant files


def test_stale_versions_are_removed(source, tmp_path):
    from kokoro_api.engine.prepare import PREPARE_VERSION, prepare_model, prepared_path

    current = prepared_path(source, tmp_path, "int8")
    older = current.with_name(current.name.replace(f"-v{PREPARE_VERSION}.", "-v1."))
    other_variant = prepared_path(source, tmp_path, "float").with_name(older.name.replace("int8", "float"))
    current.parent.mkdir(parents=True)
    older.write_bytes(b"old")
    other_variant.write_bytes(b"old float")
    assert prepare_model(source, tmp_path, "int8") == current
    assert not older.exists()  # same source and variant, older version: gone
    assert other_variant.exists()  # another variant's file is not this call's business


def test_corrupt_source_is_a_clear_error(source, tmp_path):
    from kokoro_api.engine.prepare import PrepareError, prepare_model

    bad = tmp_path / "truncated.onnx"
    with source.open("rb") as f:
        bad.write_bytes(f.read(3_000_000))
    with pytest.raises(PrepareError, match="truncated or corrupt"):
        prepare_model(bad, tmp_path / "cache", "float")
    assert not list((tmp_path / "cache").glob("prepared/*.onnx"))

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all" * 1000)
    with pytest.raises(PrepareError, match="truncated or corrupt"):
        prepare_model(garbage, tmp_path / "cache", "int8")


def test_unknown_variant(source, tmp_path):
    from kokoro_api.engine.prepare import prepare_model

    with pytest.raises(ValueError):
        prepare_model(source, tmp_path, "fp16")  # type: ignore[arg-type]


def test_copied_source_reuses_digest(source, tmp_path):
    """Same bytes at another path: same prepared file name (keyed by content, not path)."""
    from kokoro_api.engine.prepare import prepared_path

    copy = tmp_path / "copy.onnx"
    shutil.copyfile(source, copy)
    assert (
        prepared_path(copy, tmp_path / "c", "int8").name == prepared_path(source, tmp_path / "c", "int8").name
    )


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def test_preparation_runs_in_a_child_process(source, tmp_path):
    """The service prepares in a child: the ~1.3 GB the rewrite allocates never stays in the server
    (a server that prepared in-process sat at 2.07 GB RSS and was OOM-killed at its 2 GiB limit)."""
    from kokoro_api.engine.prepare import PrepareError, prepare_in_subprocess, prepared_path

    before = _rss_mb()
    path = prepare_in_subprocess(source, tmp_path, "float")
    assert path == prepared_path(source, tmp_path, "float") and path.stat().st_size > 100_000_000
    assert _rss_mb() - before < 150, (before, _rss_mb())
    assert prepare_in_subprocess(source, tmp_path, "float") == path  # cache hit, no child
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(source.read_bytes()[:1_000_000])
    with pytest.raises(PrepareError, match="truncated or corrupt"):
        prepare_in_subprocess(broken, tmp_path, "float")


def test_an_fp32_export_runs_with_every_variant(source, feeds, tmp_path):
    """KOKORO_MODEL_PATH may be any Kokoro v1.0 export, fp32 too: every variant and `auto` prepare it
    (there is nothing to de-quantize; the float variant only gains its 2-D convolutions, fast quantizes
    the float generator convolutions directly) and it speaks."""
    import onnx

    from kokoro_api.engine.choose import choose_variant
    from kokoro_api.engine.prepare import VARIANTS, _dequantize, prepare_in_subprocess

    model = onnx.load(os.fspath(source))
    assert _dequantize(model, keep_predictor_int8=False)["ConvInteger"] > 0
    fp32 = tmp_path / "kokoro-v1.0-fp32.onnx"
    onnx.save(model, os.fspath(fp32))
    del model
    assert not {"ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM"} & {
        n.op_type for n in onnx.load(os.fspath(fp32), load_external_data=False).graph.node
    }
    cache = tmp_path / "cache"
    for variant in VARIANTS:
        out = run(session(prepare_in_subprocess(fp32, cache, variant)), feeds[0])
        assert out["durations"].sum() * SAMPLES_PER_FRAME == out["audio"].size
        assert np.sqrt(np.mean(out["audio"] ** 2)) > 0.01  # speech, not silence
    voices = np.load(voices_path())
    variant, path = choose_variant(fp32, cache, 2, voices["af_heart"])
    assert variant in VARIANTS and path.is_file()


def test_truncated_or_corrupt_prepared_model_is_rebuilt(source, tmp_path):
    """A prepared model cut short (full disk, interrupted copy) or corrupted in the cache is detected
    (recorded size; ONNX Runtime refusing it) and prepared again, instead of failing every start."""
    from helpers import voices_path
    from kokoro_api.config import Settings
    from kokoro_api.engine.prepare import prepare_model
    from kokoro_api.runtime import Runtime

    dst = prepare_model(source, tmp_path, "int8")
    size = dst.stat().st_size
    with open(dst, "r+b") as f:  # truncated: found by its recorded size, before any load
        f.truncate(size // 2)
    assert prepare_model(source, tmp_path, "int8") == dst
    assert dst.stat().st_size == size
    session(dst)  # loads

    with open(dst, "r+b") as f:  # same size, garbage header: ONNX Runtime refuses it -> prepared again
        f.write(b"\xff" * 4096)
    settings = Settings(model_path=source, cache_dir=tmp_path, model_variant="int8", warmup=False,
                        voices_path=voices_path(), workers=1)
    rt = Runtime(settings)
    try:
        rt.load()
        assert rt.model_path == dst and dst.read_bytes()[:4096] != b"\xff" * 4096
    finally:
        rt.close()
