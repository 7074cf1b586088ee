"""Test helpers shared by the test modules: paths, a live server, audio decoding, the error shape."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VOICES = ROOT.parent / "shared" / "kokoro" / "voices-v1.0-en.npz"


def voices_path() -> Path:
    path = Path(os.environ.get("KOKORO_VOICES_PATH") or DEFAULT_VOICES)
    if not path.exists():
        pytest.exit(f"voice bundle not found at {path}: set KOKORO_VOICES_PATH", returncode=2)
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("KOKORO_CACHE_DIR") or Path.home() / ".cache" / "kokoro-api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode any of our formats to mono float samples: soundfile first, PyAV for what it can't (AAC)."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            return f.read(dtype="float32"), f.samplerate
    except Exception:
        import av

        with av.open(io.BytesIO(data)) as c:
            stream = c.streams.audio[0]
            frames = [fr.to_ndarray().reshape(-1) for fr in c.decode(stream)]
            assert stream.codec_context.channels == 1
            return np.concatenate(frames).astype(np.float32), stream.codec_context.sample_rate


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"KOKORO_VOICES_PATH": str(voices_path()), "KOKORO_CACHE_DIR": str(cache_dir())})
    env.update(extra)
    return env


class LiveServer:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def live_server(tmp: Path, *args: str, wait_ready: bool = True, timeout: float = 240, **env: str) -> Iterator[LiveServer]:
    """Run a real ``kokoro-api serve`` on a free port; yields once /readyz is 200 (or at once)."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kokoro_api.cli", "serve", "--port", str(port), *args],
        env=server_env(**env), stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    server = LiveServer(proc, f"http://127.0.0.1:{port}", log)
    try:
        if wait_ready:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}:\n{server.output()[-3000:]}")
                try:
                    if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready in {timeout} s:\n{server.output()[-3000:]}")
                time.sleep(0.3)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def assert_error(resp: httpx.Response, status: int, error: str | None = None) -> dict:
    """The documented error shape: OpenAI's ``{"error": {message, type, param, code}, message, details}`` on
    ``/v1/...``, the plan's ``{error, message, details}`` elsewhere. Returns the body with ``error`` being
    the error's name (``InvalidVoice``) in both cases, so callers check one thing."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "message", "details"}, body
    assert isinstance(body["message"], str) and body["message"]
    if resp.request.url.path.startswith("/v1/"):
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"}, body
        assert err["message"] == body["message"]
        assert err["type"] == openai_type(status), body
        name = "".join(part.title() for part in err["code"].split("_"))
        body = {**body, "error": name, "openai": err}
    if error:
        assert body["error"].lower() == error.lower(), body
    return body


def openai_type(status: int) -> str:
    return {401: "authentication_error", 404: "not_found_error"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
