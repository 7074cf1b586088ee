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


def _wait_ready(server: LiveServer, timeout: float = 240) -> None:
    """Block until the server's /readyz is 200; raises with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.output()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready in {timeout} s:\n{server.output()[-3000:]}")
        time.sleep(0.3)


@contextmanager
def live_server(
    tmp: Path, *args: str, wait_ready: bool = True, timeout: float = 240, port: int | None = None, **env: str
) -> Iterator[LiveServer]:
    """Run a real ``kokoro-api serve`` on ``port`` (default: a free one); yields once /readyz is 200 (or at
    once)."""
    port = port or free_port()
    log = tmp / f"server-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kokoro_api.cli", "serve", "--port", str(port), *args],
        env=server_env(**env), stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    server = LiveServer(proc, f"http://127.0.0.1:{port}", log)
    try:
        if wait_ready:
            _wait_ready(server, timeout)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_ready(server: LiveServer, timeout: float = 240) -> None:
    """For servers started with ``wait_ready=False`` (e.g. several at once)."""
    _wait_ready(server, timeout)


class RoundRobinProxy:
    """A small HTTP reverse proxy on loopback standing in for a Service in front of replicas: each request
    goes to the next backend in turn (no affinity, no retries), and a backend that has not started to
    answer within ``per_try_timeout_s`` gets the client a 504, as the mesh's perTryTimeout would. Bodies
    are relayed as they come (a chunked stream stays a stream). ``served`` lists (method, path, backend)."""

    HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"content-length"}

    def __init__(self, backends: list[str], per_try_timeout_s: float = 30.0) -> None:
        import threading

        self.backends = backends
        self.per_try_timeout_s = per_try_timeout_s
        self.served: list[tuple[str, str, str]] = []
        self._turn = 0
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None
        self._server = None

    def backend_of(self, resp: httpx.Response) -> str:
        return resp.headers["x-upstream"]

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        import asyncio

        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        with self._lock:
            backend = self.backends[self._turn % len(self.backends)]
            self._turn += 1
        self.served.append((scope["method"], scope["path"], backend))
        query = scope["query_string"].decode()
        url = backend + scope["raw_path"].decode() + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in self.HOP]
        client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None))
        try:
            req = client.build_request(scope["method"], url, headers=headers, content=body)
            try:
                resp = await asyncio.wait_for(client.send(req, stream=True), self.per_try_timeout_s)
            except TimeoutError:
                await self._plain(send, 504, b"upstream request timeout", backend)
                return
            except httpx.HTTPError as exc:
                await self._plain(send, 502, f"upstream failed: {type(exc).__name__}".encode(), backend)
                return
            out = [(k, v) for k, v in resp.headers.raw if k.lower() not in self.HOP - {b"content-length"}]
            out.append((b"x-upstream", backend.encode()))
            await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            await resp.aclose()
        finally:
            await client.aclose()

    @staticmethod
    async def _plain(send, status: int, text: bytes, backend: str) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain"), (b"x-upstream", backend.encode())]})
        await send({"type": "http.response.body", "body": text})

    def __enter__(self) -> RoundRobinProxy:
        import threading

        import uvicorn

        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("round-robin proxy did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)


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
