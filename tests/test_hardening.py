"""Backpressure, max queue wait, cancellation and graceful shutdown against a real `kokoro-api serve`.

One worker and a queue of two make the limits easy to reach. Times are compared with each other (ratios),
never with absolute budgets, since the machine is shared.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import assert_error, live_server
from kokoro_api.admission import Admission
from kokoro_api.errors import Overloaded

SHORT = "Hello there, how are you today?"
MEDIUM = (
    "The service answers at once when it is full, so the mesh can try another pod. It never lets a "
    "queue grow without bound, and it never leaves a client waiting forever. Requests it accepted are "
    "finished, even when the pod is asked to stop."
)
SENTENCE = "Every sentence of this long passage takes the worker a while to speak aloud, word by word. "
LONG = (SENTENCE * 30).strip()  # ~2,700 characters: minutes of audio


def speech(
    url: str, text: str, fmt: str = "pcm", timeout: float = 180, **extra
) -> tuple[httpx.Response, float]:
    """One whole-file (not streamed) request; returns the response and its latency."""
    t0 = time.perf_counter()
    body = {"input": text, "voice": "af_heart", "response_format": fmt, "stream": False, **extra}
    r = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=timeout)
    return r, time.perf_counter() - t0


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples over all label values (0 before any)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """One worker and a queue of two (the default maximum wait: 30 s)."""
    with live_server(tmp_path_factory.mktemp("hardening"), KOKORO_WORKERS="1", KOKORO_MAX_QUEUE="2") as s:
        yield s


def test_overload_gives_200s_and_fast_503s(small):
    url = small.url
    speech(url, SHORT)  # warm
    n = 10
    barrier = threading.Barrier(n)

    def one(_: int) -> tuple[httpx.Response, float]:
        barrier.wait()
        return speech(url, SHORT, timeout=120)  # a hang fails here, never blocks the suite

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    ok = [t for r, t in results if r.status_code == 200]
    shed = [(r, t) for r, t in results if r.status_code == 503]
    assert len(ok) + len(shed) == n, [r.status_code for r, _ in results]  # nothing else: no 500, no 429
    assert len(ok) >= 3  # the worker and both queue places are served
    assert shed, "10 simultaneous requests against 1 worker + 2 queued must shed some"
    for r, _ in shed:
        body = assert_error(r, 503, "Overloaded")
        assert int(r.headers["retry-after"]) >= 1
        assert body["details"]["max_queue"] == 2
    # fast: every 503 came back in less than half the time the slowest 200 took
    assert max(t for _, t in shed) < max(ok) / 2, (sorted(t for _, t in shed), sorted(ok))
    # afterwards the service serves normally
    assert httpx.get(f"{url}/readyz").status_code == 200
    r, _ = speech(url, SHORT)
    assert r.status_code == 200 and len(r.content) > 24000
    assert metric(url, "kokoro_queue_depth") == 0 and metric(url, "kokoro_inflight_syntheses") == 0


@pytest.fixture(scope="module")
def costs(small) -> tuple[float, float]:
    """Latency of the short and the medium text, whole, on the idle server."""
    short = min(speech(small.url, SHORT)[1] for _ in range(2))
    r, medium = speech(small.url, MEDIUM)
    assert r.status_code == 200
    return short, medium


def test_cancellation_frees_the_worker(small, costs):
    """A long stream's client leaves after the first chunk: the next request starts without waiting for
    the abandoned text."""
    url = small.url
    short, medium = costs
    long_estimate = medium * len(LONG) / len(MEDIUM)  # what the whole long text would cost
    aborted_before = metric(url, "kokoro_requests_aborted_total")

    with (
        httpx.Client(timeout=60) as c,
        c.stream(
            "POST",
            f"{url}/v1/audio/speech",
            json={"input": LONG, "voice": "af_heart", "response_format": "pcm", "stream_format": "audio"},
        ) as stream,
    ):
        assert stream.status_code == 200
        chunks = stream.iter_bytes()  # keep a reference: a collected iterator closes the response
        assert next(chunks)
        assert metric(url, "kokoro_inflight_syntheses") == 1
        started = time.perf_counter()
    # the client is gone (response and connection closed): the next request starts at once
    r, after = speech(url, SHORT)
    assert r.status_code == 200
    assert after < long_estimate / 5, (after, short, long_estimate)
    assert after < short * 4 + 2, (after, short)
    # and the stream was cut short, not left to run: the worker went back to the pool
    assert time.perf_counter() - started < long_estimate / 2
    assert metric(url, "kokoro_inflight_syntheses") == 0
    deadline = time.monotonic() + 10
    while metric(url, "kokoro_requests_aborted_total") < aborted_before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(url, "kokoro_requests_aborted_total") == aborted_before + 1


class _SlowSynthesizer:
    """Stands in for the model: every synthesis takes ``seconds`` and returns one second of silence."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.voices = type("Voices", (), {"style": staticmethod(lambda voice: None)})()
        self.pool = type("Pool", (), {"close": staticmethod(lambda: None)})()

    async def synthesize(self, text, voice, speed, british=None, max_audio_s=None, progress=None, normalize=True):
        from kokoro_api.synthesis import Segment

        await asyncio.sleep(self.seconds)
        return Segment(np.zeros(24000, np.float32))

    async def segments(self, text, voice, speed, **_):
        yield await self.synthesize(text, voice, speed)


def test_abandoned_whole_file_request_frees_the_worker(small, costs):
    """A whole-file request whose client gives up (as a mesh per-try timeout does) stops synthesizing: the
    next request does not wait for the abandoned text."""
    url = small.url
    short, medium = costs
    aborted_before = metric(url, "kokoro_requests_aborted_total")
    with pytest.raises(httpx.ReadTimeout):
        speech(url, MEDIUM, timeout=httpx.Timeout(30, read=min(1.0, medium / 5)))
    r, after = speech(url, SHORT)
    assert r.status_code == 200
    assert after < medium / 2, (after, short, medium)
    assert metric(url, "kokoro_inflight_syntheses") == 0
    assert metric(url, "kokoro_requests_aborted_total") == aborted_before + 1


def test_max_queue_wait_is_a_503_over_http(tmp_path):
    """With the only worker busy, a queued request gives up after max_queue_wait_s: 503 Overloaded with
    Retry-After, while the request holding the worker completes."""
    from fastapi.testclient import TestClient

    from kokoro_api.app import create_app
    from kokoro_api.config import Settings
    from kokoro_api.runtime import Runtime

    settings = Settings(
        voices_path=tmp_path / "none.npz", workers=1, max_queue=2, max_queue_wait_s=0.5, warmup=False
    )
    app = create_app(settings)
    with TestClient(app) as c:
        app.state.runtime = Runtime(settings, synthesizer=_SlowSynthesizer(2.0), ready=True)
        body = {"input": "Hi.", "response_format": "pcm", "stream": False}
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(c.post, "/v1/audio/speech", json=body)
            time.sleep(0.3)
            t0 = time.perf_counter()
            second = pool.submit(c.post, "/v1/audio/speech", json=body).result()
            waited = time.perf_counter() - t0
            assert first.result().status_code == 200
        err = assert_error(second, 503, "Overloaded")
        assert "waited" in err["message"] and second.headers["retry-after"] == "1"
        assert 0.45 <= waited < 2.0, waited  # gave up at the bound, not when the worker came free


def test_admission_max_wait_unit():
    """The queue-wait bound on its own: a waiter gives up with 503 Overloaded, the slot is not lost."""

    async def run() -> None:
        adm = Admission(slots=1, max_queue=2, max_wait_s=0.2)
        lease = await adm.acquire()
        t0 = time.perf_counter()
        with pytest.raises(Overloaded) as exc:
            await adm.acquire()
        assert time.perf_counter() - t0 >= 0.18
        assert exc.value.status == 503 and exc.value.headers["Retry-After"] == "1"
        assert adm.waiting == 0 and adm.in_flight == 1
        # queue full: the fourth request is refused at once, without waiting
        waiters = [asyncio.ensure_future(adm.acquire()) for _ in range(2)]
        await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        with pytest.raises(Overloaded, match="queue full"):
            await adm.acquire()
        assert time.perf_counter() - t0 < 0.05
        lease.release()
        got = await waiters[0]
        got.release()
        (await waiters[1]).release()
        assert adm.in_flight == 0 and adm.waiting == 0
        adm.draining = True
        with pytest.raises(Overloaded, match="shutting down"):
            await adm.acquire()

        # the moment after a release: the woken waiter has not run yet, a newcomer still finds its place
        adm = Admission(slots=1, max_queue=1, max_wait_s=5)
        first = await adm.acquire()
        waiter = asyncio.ensure_future(adm.acquire())
        await asyncio.sleep(0.01)
        first.release()  # hands the slot to the waiter, which runs later
        newcomer = asyncio.ensure_future(adm.acquire())
        (await waiter).release()
        (await newcomer).release()

    asyncio.run(run())


def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path):
    """SIGTERM with a stream running and a whole-file request queued behind it: /readyz turns 503 at once,
    new requests get 503 (or a refused connection), both accepted requests finish whole, exit code 0."""
    with live_server(
        tmp_path, KOKORO_WORKERS="1", KOKORO_DRAIN_DELAY_S="1", KOKORO_GRACEFUL_TIMEOUT_S="120"
    ) as s:
        url = s.url
        results: dict[str, object] = {}

        def streamed() -> None:
            chunks = []
            with (
                httpx.Client(timeout=120) as c,
                c.stream(
                    "POST",
                    f"{url}/v1/audio/speech",
                    json={
                        "input": MEDIUM,
                        "voice": "af_heart",
                        "response_format": "pcm",
                        "stream_format": "audio",
                    },
                ) as r,
            ):
                results["stream_status"] = r.status_code
                for b in r.iter_bytes():
                    chunks.append(b)
                    results.setdefault("stream_started", time.monotonic())
            results["stream"] = b"".join(chunks)

        def whole() -> None:
            r, _ = speech(url, MEDIUM, timeout=120)
            results["whole_status"], results["whole"] = r.status_code, r.content

        t_stream = threading.Thread(target=streamed)
        t_stream.start()
        deadline = time.monotonic() + 60
        while "stream_started" not in results and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "stream_started" in results
        t_whole = threading.Thread(target=whole)
        t_whole.start()
        while metric(url, "kokoro_queue_depth") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metric(url, "kokoro_queue_depth") == 1  # accepted, waiting behind the stream

        s.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while httpx.get(f"{url}/readyz", timeout=5).status_code != 503:
            assert time.monotonic() - signalled < 2, "readiness did not turn 503"
            time.sleep(0.02)
        assert httpx.get(f"{url}/readyz", timeout=5).json()["error"] == "ShuttingDown"
        try:
            r, _ = speech(url, SHORT, timeout=30)
            assert_error(r, 503)
        except httpx.ConnectError:
            pass
        assert "stream" not in results or "whole" not in results  # the signal came while they ran

        t_stream.join(120)
        t_whole.join(120)
        assert s.proc.wait(60) == 0, s.output()[-3000:]
        assert results["stream_status"] == 200 and results["whole_status"] == 200
        a, b = len(results["stream"]), len(results["whole"])
        assert a > 48000 * 5 and abs(a - b) / b < 0.1, (a, b)  # whole audio both ways (~12 s of speech)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=5)
        out = s.output()
        assert '"msg": "draining"' in out and '"msg": "drained"' in out


PATHLIKE_VOICES = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "af_heart/../af_bella",
    "af_heart.npy",
    "voices/af_heart",
    "..\\..\\windows\\win.ini",
    "%2e%2e%2faf_heart",
    "~/af_heart",
    "af_heart\x00",
    "af_heart(1)+../../x(1)",
    "file:///etc/passwd",
    "af_heart/",
]


@pytest.mark.parametrize("voice", PATHLIKE_VOICES)
def test_voice_names_only_match_loaded_voices(client, settings, voice):
    r = client.post("/v1/audio/speech", json={"input": "Hi.", "voice": voice, "response_format": "pcm"})
    body = assert_error(r, 400, "InvalidVoice")
    assert str(settings.voices_path.parent) not in r.text and "Errno" not in body["message"]


def test_a_500_says_connection_close(tmp_path):
    """The server closes the connection after an unhandled error; the response must say so, or a client
    reuses a dead connection. A real route added to a real app raises."""
    from fastapi.testclient import TestClient

    from kokoro_api.app import create_app
    from kokoro_api.config import Settings

    app = create_app(Settings(voices_path=tmp_path / "none.npz", warmup=False))

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
        assert_error(r, 500, "InternalError")
        assert r.headers["connection"] == "close"


def test_health_bodies_carry_no_absolute_paths(tmp_path):
    from fastapi.testclient import TestClient

    from kokoro_api.app import create_app
    from kokoro_api.config import Settings

    missing = tmp_path / "secret-dir" / "voices.npz"
    with TestClient(create_app(Settings(voices_path=missing, warmup=False))) as c:
        deadline = time.monotonic() + 60
        while c.get("/healthz").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for path in ("/healthz", "/readyz"):
            body = c.get(path).json()
            assert "voices.npz" in body["message"] and str(tmp_path) not in body["message"], body
