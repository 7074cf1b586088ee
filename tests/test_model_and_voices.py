"""Model resolution and voices: clear start-up errors, the assembled model, mixes, `models pull` conversion."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import cache_dir, server_env, voices_path
from kokoro_api.engine.model import MODEL_SHA256, MODEL_SIZE, assemble, resolve_model, sha256_file
from kokoro_api.errors import InvalidVoice, StartupError
from kokoro_api.pull import VOICE_SHA256, check_voice, pt_to_array, pull_voices
from kokoro_api.voices import VoiceStore, load_bundle, parse_mix


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = server_env(**env)
    for k in [k for k, v in env.items() if v == ""]:
        full_env.pop(k)
    return subprocess.run([sys.executable, "-m", "kokoro_api.cli", *args], env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_assembles_embedded_model_atomically(tmp_path):
    path = assemble(tmp_path, progress=False)
    assert path.stat().st_size == MODEL_SIZE
    assert sha256_file(path) == MODEL_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_explicit_missing_model_is_clear_error(tmp_path):
    with pytest.raises(StartupError, match="does not exist"):
        resolve_model(tmp_path / "nope.onnx", tmp_path)


def test_truncated_model_is_clear_error_naming_file(tmp_path):
    source = resolve_model(None, cache_dir())
    broken = tmp_path / "truncated.onnx"
    broken.write_bytes(source.read_bytes()[: 5_000_000])
    r = run_cli("serve", "--port", "1", "--model", str(broken), KOKORO_CACHE_DIR=str(tmp_path / "c"))
    assert r.returncode == 2, r.stderr
    assert str(broken) in r.stderr
    assert "Traceback" not in r.stderr


def test_no_voices_refuses_to_start():
    r = run_cli("serve", "--port", "1", KOKORO_VOICES_PATH="")
    assert r.returncode == 2
    assert "KOKORO_VOICES_PATH" in r.stderr and "Traceback" not in r.stderr


def test_broken_voice_file_refuses_to_start(tmp_path):
    bad = tmp_path / "voices.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    r = run_cli("serve", "--port", "1", KOKORO_VOICES_PATH=str(bad))
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr


def test_models_command_reports(tmp_path):
    r = run_cli("models")
    assert r.returncode == 0, r.stderr
    assert MODEL_SHA256 in r.stdout and "verified" in r.stdout
    assert "voices:" in r.stdout and "en-us" in r.stdout


def test_voice_folder_of_npy(tmp_path):
    bundle = load_bundle(voices_path())
    for name in ("af_heart", "bm_george"):
        np.save(tmp_path / f"{name}.npy", bundle[name])
    assert sorted(load_bundle(tmp_path)) == ["af_heart", "bm_george"]


def test_wrong_shape_voice_rejected(tmp_path):
    np.save(tmp_path / "af_bad.npy", np.zeros((10, 256), np.float32))
    with pytest.raises(StartupError, match="shape"):
        load_bundle(tmp_path)


def test_mix_parsing_and_weights():
    assert parse_mix("af_bella(2)+af_sky(1)") == [("af_bella", 2.0), ("af_sky", 1.0)]
    assert parse_mix(" af_bella ") == [("af_bella", 1.0)]
    assert parse_mix("af_bella ( 2.5 ) + af_sky") == [("af_bella", 2.5), ("af_sky", 1.0)]
    for bad in ["af_bella(0)", "af_bella(-1)", "af_bella(x)", "af_bella(2", "+", "a/b", "af_bella(nan)",
                "af_bella()", "af_bella(1))", "af_bella((1)", "af_bella(1)x", "(1)", "af_bella(inf)"]:
        with pytest.raises(InvalidVoice):
            parse_mix(bad)
    with pytest.raises(InvalidVoice, match="at most 32 voices"):
        parse_mix("+".join(["af_bella"] * 33))
    assert len(parse_mix("+".join(["af_bella"] * 32))) == 32


@pytest.mark.timeout(20)
@pytest.mark.parametrize("spec", ["af_heart(" + " " * 20_000, "af_heart(" + " " * 20_000 + "x)",
                                  " " * 20_000 + "af_heart" + " " * 20_000 + "(", "a" * 100_000])
def test_mix_parsing_is_linear_on_hostile_input(spec):
    """A backtracking regex took 4.8 s on 2,000 spaces after 'af_heart(' (cubic): hours on these."""
    with pytest.raises(InvalidVoice):
        parse_mix(spec)
    store = VoiceStore(load_bundle(voices_path()))
    mix = store.style("af_bella(3)+af_sky(1)")
    expected = 0.75 * store.style("af_bella") + 0.25 * store.style("af_sky")
    np.testing.assert_allclose(mix, expected, rtol=1e-6)


def _write_pt(path: Path, arr: np.ndarray) -> None:
    """Write a torch-format .pt zip (pickle + raw float32 storage) without torch, as torch.save would."""
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):  # pragma: no cover - only referenced by name in the pickle
        raise AssertionError

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    fake_torch.FloatStorage, fake_utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            stride = tuple(int(np.prod(arr.shape[i + 1:])) for i in range(arr.ndim))
            return (_rebuild_tensor_v2, (Storage(), 0, arr.shape, stride, False, {}))

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", arr.size) if isinstance(obj, Storage) else None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": fake_torch, "torch._utils": fake_utils})
    try:
        buf = io.BytesIO()
        P(buf, protocol=2).dump(Tensor())
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("af_heart/data.pkl", buf.getvalue())
        zf.writestr("af_heart/data/0", np.ascontiguousarray(arr, "<f4").tobytes())
        zf.writestr("af_heart/version", "3\n")


def test_pull_converts_pt_without_torch(tmp_path):
    real = load_bundle(voices_path())["af_heart"]
    pt = tmp_path / "af_heart.pt"
    _write_pt(pt, real)
    arr = pt_to_array(pt.read_bytes())
    np.testing.assert_array_equal(arr, real)
    check_voice("af_heart", arr)  # matches the pinned sha256
    with pytest.raises(StartupError, match="sha256"):
        check_voice("af_heart", arr * 1.001)
    assert len(VOICE_SHA256) == 28


def test_pull_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    pickle.dump(Evil(), buf, protocol=2)
    with zipfile.ZipFile(tmp_path / "x.pt", "w") as zf:
        zf.writestr("x/data.pkl", buf.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        pt_to_array((tmp_path / "x.pt").read_bytes())


def test_pull_offline_is_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("kokoro_api.pull.VOICE_URL", "http://127.0.0.1:9/{name}.pt")
    with pytest.raises(StartupError, match="needs the internet"):
        pull_voices(tmp_path, timeout=5)


def test_pull_through_a_captive_portal_is_clear_error(tmp_path, monkeypatch):
    """A proxy answering HTML instead of the voice file: a clear message, nothing written."""
    import http.server
    import threading

    class Portal(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = b"<html><body>Please log in to the hotel Wi-Fi</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr("kokoro_api.pull.VOICE_URL", f"http://127.0.0.1:{server.server_port}/{{name}}.pt")
        with pytest.raises(StartupError, match="not a torch voice file.*captive portal"):
            pull_voices(tmp_path, timeout=5)
    finally:
        server.shutdown()
    assert not list(tmp_path.glob("*.npz"))
