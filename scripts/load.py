#!/usr/bin/env python3
"""Load test for kokoro-api: N concurrent clients, mixed formats and lengths, streamed and whole.

Reports the success rate, latency percentiles (whole response and first byte), the server's resident
memory over time and its growth, and exits non-zero when a target is missed.

    python scripts/load.py --url http://127.0.0.1:8880 --clients 10 --duration 60
    python scripts/load.py --spawn --requests 1000           # start a local server, 1,000 requests
    task load -- --url http://127.0.0.1:8880 --requests 1000 --json load.json

How outcomes count: a 2xx with audio is a success. A 503 ``Overloaded`` (with Retry-After) is load the
server shed on purpose; it counts as a failure of the run unless ``--retry-overloaded`` is given, in which
case the client waits Retry-After and retries (at most 3 times), as the mesh does across pods, and the
final outcome counts. Any other 5xx, a transport error or a timeout is always a failure. Size
``--clients`` within workers + max queue to measure capacity; go above it to exercise load shedding.

Memory: RSS of the server process (``--pid``, else the process listening on the URL's port, found with
psutil) is sampled every ``--sample-interval`` seconds. Growth compares the median of the samples taken
during the last tenth of the run with the median during the second tenth (after warm-up).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Load tests keep a service honest about its limits.",
    "Every request should finish, or be refused quickly and clearly.",
    "Memory that grows without bound is a leak waiting for a pager.",
    "On Tuesday, 3 March 2026, the forecast calls for 12 millimetres of rain.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "Streaming audio starts playing long before the whole text is spoken.",
    "A short answer is often the best one.",
]
# (name, weight, sentences, mode): modes are whole, stream (chunked audio) and sse
SHAPES = [
    ("short", 50, 1, "whole"),
    ("short-stream", 10, 1, "stream"),
    ("medium", 20, 3, "whole"),
    ("medium-sse", 5, 3, "sse"),
    ("long-stream", 15, 10, "stream"),
]
# One sentence each, whole, streamed and SSE, in every format: ~3.5 s of audio per request, so that 1,000
# requests take ~40 min on 2 cores instead of the ~2 h of the mixed shapes (about 11 s of audio each).
SHORT_SHAPES = [("short", 60, 1, "whole"), ("short-stream", 30, 1, "stream"), ("short-sse", 10, 1, "sse")]
MIXES = {"mixed": SHAPES, "short": SHORT_SHAPES}


@dataclass
class Result:
    shape: str
    fmt: str
    status: int  # 0: transport error or timeout
    latency: float
    first_byte: float | None
    nbytes: int
    attempts: int = 1
    error: str | None = None
    started: float = 0.0


@dataclass
class Report:
    url: str
    clients: int
    requests: int
    seconds: float
    success_rate: float
    succeeded: int
    shed_503: int
    other_5xx: int
    client_4xx: int
    transport_errors: int
    retries: int
    latency_s: dict[str, float]
    first_byte_s: dict[str, float]
    by_shape: dict[str, dict[str, float]]
    statuses: dict[str, int]
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None
    rss_peak_mb: float | None = None
    memory_growth: float | None = None

    def ok(self, min_success: float, max_growth: float | None) -> bool:
        """Every target that was measured is met (see ``verdict`` for the unmeasured memory target)."""
        if self.success_rate < min_success or self.other_5xx:
            return False
        return max_growth is None or self.memory_growth is None or self.memory_growth <= max_growth

    def verdict(self, min_success: float, max_growth: float | None) -> str:
        if not self.ok(min_success, max_growth):
            return (f"MISSED (success >= {min_success:.1%}, no 5xx other than 503"
                    + (f", memory growth <= {max_growth:.0%})" if max_growth is not None else ")"))
        if max_growth is not None and self.memory_growth is None:
            return ("success met; memory growth NOT MEASURED (give --pid, or run on the server's host with "
                    "a run long enough for two tenths of RSS samples)")
        return "met"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)

    def pct(p: float) -> float:
        return round(s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))], 4)  # nearest rank

    return {
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": round(s[-1], 4),
        "mean": round(statistics.fmean(s), 4),
    }


def _request_body(rng: random.Random, shapes: list[tuple[str, int, int, str]]) -> tuple[str, str, dict]:
    name, _, n, mode = rng.choices(shapes, weights=[w for _, w, _, _ in shapes])[0]
    fmt = rng.choice(FORMATS)
    text = " ".join(rng.choice(SENTENCES) for _ in range(n))
    body = {
        "model": "kokoro",
        "input": text,
        "voice": rng.choice(["af_heart", "af_bella", "am_adam", "bf_emma"]),
        "response_format": fmt,
        "stream": mode != "whole",
    }
    if mode == "sse":
        body["stream_format"] = "sse"
    return name, fmt, body


def _one(
    client: httpx.Client,
    url: str,
    rng: random.Random,
    retry_overloaded: bool,
    timeout: float,
    shapes: list[tuple[str, int, int, str]],
) -> Result:
    shape, fmt, body = _request_body(rng, shapes)
    started = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        first = None
        nbytes = 0
        try:
            with client.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=timeout) as r:
                for chunk in r.iter_bytes():
                    if first is None:
                        first = time.perf_counter() - started
                    nbytes += len(chunk)
                status = r.status_code
                retry_after = r.headers.get("retry-after")
        except httpx.HTTPError as exc:
            return Result(
                shape,
                fmt,
                0,
                time.perf_counter() - started,
                first,
                nbytes,
                attempts,
                f"{type(exc).__name__}: {exc}"[:200],
                started,
            )
        if status == 503 and retry_overloaded and attempts < 4:
            time.sleep(float(retry_after or 1) * (0.5 + rng.random()))
            continue
        return Result(
            shape, fmt, status, time.perf_counter() - started, first, nbytes, attempts, None, started
        )


def find_pid(url: str) -> int | None:
    """The process listening on the URL's port (local servers only)."""
    import psutil

    port = urlparse(url).port or 80
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except psutil.AccessDenied:
        pass
    return None


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.t0 = time.perf_counter()

    def sample(self) -> None:
        try:
            self.samples.append(
                (round(time.perf_counter() - self.t0, 2), self.proc.memory_info().rss / 2**20)
            )
        except Exception:  # the server went away: stop sampling, keep what we have
            self.stop.set()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def memory_growth(samples: list[tuple[float, float]]) -> tuple[float | None, float | None, float | None]:
    """(start MB, end MB, growth): median of the second tenth of the run vs median of the last tenth."""
    if len(samples) < 10:
        return None, None, None
    n = len(samples)
    start = statistics.median(v for _, v in samples[n // 10 : max(n // 10 + 1, n // 5)])
    end = statistics.median(v for _, v in samples[n - max(1, n // 10) :])
    return round(start, 1), round(end, 1), round((end - start) / start, 4)


def run_load(
    url: str,
    *,
    clients: int = 10,
    duration: float | None = None,
    requests: int | None = None,
    pid: int | None = None,
    retry_overloaded: bool = False,
    timeout: float = 300,
    seed: int = 1,
    sample_interval: float = 1.0,
    api_key: str | None = None,
    progress: bool = False,
    shapes: list[tuple[str, int, int, str]] | None = None,
) -> Report:
    """Run the load and return the report (also used by tests/test_load.py)."""
    if (duration is None) == (requests is None):
        raise ValueError("give exactly one of duration or requests")
    url = url.rstrip("/")
    pid = pid or find_pid(url)
    sampler = RssSampler(pid, sample_interval) if pid else None
    if sampler:
        sampler.sample()
        sampler.start()
    results: list[Result] = []
    lock = threading.Lock()
    issued = 0
    deadline = time.perf_counter() + duration if duration is not None else None
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def take() -> bool:
        nonlocal issued
        with lock:
            if requests is not None:
                if issued >= requests:
                    return False
                issued += 1
                return True
            return time.perf_counter() < deadline  # type: ignore[operator]

    def client_loop(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        with httpx.Client(headers=headers) as client:
            while take():
                r = _one(client, url, rng, retry_overloaded, timeout, shapes or SHAPES)
                with lock:
                    results.append(r)
                    done = len(results)
                if progress and done % 50 == 0:
                    print(f"  {done} requests", file=sys.stderr)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if sampler:
        sampler.stop.set()
        sampler.join()
        sampler.sample()
    return summarize(url, clients, results, seconds, sampler.samples if sampler else [])


def summarize(url: str, clients: int, results: list[Result], seconds: float, rss: list) -> Report:
    ok = [r for r in results if 200 <= r.status < 300 and r.nbytes > 0]
    statuses: dict[str, int] = {}
    for r in results:
        key = str(r.status) if r.status else "error"
        statuses[key] = statuses.get(key, 0) + 1
    by_shape = {}
    for shape in sorted({r.shape for r in results}):
        mine = [r for r in results if r.shape == shape]
        good = [r.latency for r in mine if r in ok]
        by_shape[shape] = {
            "requests": len(mine),
            "success_rate": round(len(good) / len(mine), 4),
            **{k: v for k, v in percentiles(good).items() if k in ("p50", "p95")},
        }
    start, end, growth = memory_growth(rss)
    return Report(
        url=url,
        clients=clients,
        requests=len(results),
        seconds=round(seconds, 2),
        success_rate=round(len(ok) / len(results), 4) if results else 0.0,
        succeeded=len(ok),
        shed_503=sum(r.status == 503 for r in results),
        other_5xx=sum(r.status >= 500 and r.status != 503 for r in results),
        client_4xx=sum(400 <= r.status < 500 for r in results),
        transport_errors=sum(r.status == 0 for r in results),
        retries=sum(r.attempts - 1 for r in results),
        latency_s=percentiles([r.latency for r in ok]),
        first_byte_s=percentiles([r.first_byte for r in ok if r.first_byte is not None]),
        by_shape=by_shape,
        statuses=statuses,
        rss_mb=[(t, round(v, 1)) for t, v in rss],
        rss_start_mb=start,
        rss_end_mb=end,
        rss_peak_mb=round(max(v for _, v in rss), 1) if rss else None,
        memory_growth=growth,
    )


def print_report(rep: Report) -> None:
    print(f"{rep.requests} requests from {rep.clients} clients in {rep.seconds:.1f} s against {rep.url}")
    print(
        f"success rate: {rep.success_rate:.2%} ({rep.succeeded} ok, {rep.shed_503} shed with 503, "
        f"{rep.other_5xx} other 5xx, {rep.client_4xx} 4xx, {rep.transport_errors} transport errors, "
        f"{rep.retries} retries)"
    )
    lat, fb = rep.latency_s, rep.first_byte_s
    if lat:
        print(
            f"latency s:    p50 {lat['p50']:.3f}  p95 {lat['p95']:.3f}  p99 {lat['p99']:.3f}  "
            f"max {lat['max']:.3f}"
        )
        print(f"first byte s: p50 {fb['p50']:.3f}  p95 {fb['p95']:.3f}  p99 {fb['p99']:.3f}")
    for shape, s in rep.by_shape.items():
        print(
            f"  {shape:<13} {int(s['requests']):>5} req  ok {s['success_rate']:.1%}  "
            f"p50 {s.get('p50', float('nan')):.3f}  p95 {s.get('p95', float('nan')):.3f}"
        )
    if rep.rss_mb:
        step = max(1, len(rep.rss_mb) // 12)
        print("server RSS MB over time: " + "  ".join(f"{t:.0f}s:{v:.0f}" for t, v in rep.rss_mb[::step]))
        if rep.memory_growth is not None:
            print(
                f"memory: {rep.rss_start_mb} MB after warm-up -> {rep.rss_end_mb} MB at the end "
                f"({rep.memory_growth:+.1%}), peak {rep.rss_peak_mb} MB"
            )
    else:
        print("server RSS: not measured (give --pid, or run on the server's host)")


def _spawn(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kokoro_api.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the spawned server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the spawned server was not ready within 300 s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8880", help="service base URL")
    p.add_argument("--clients", type=int, default=10, help="concurrent clients (default 10)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", type=float, help="seconds to run (default 60 unless --requests)")
    g.add_argument("--requests", type=int, help="total requests instead of a duration (e.g. 1000)")
    p.add_argument("--pid", type=int, help="server process for RSS (default: the one listening on the port)")
    p.add_argument("--spawn", action="store_true", help="start a local `kokoro-api serve` for the run")
    p.add_argument("--retry-overloaded", action="store_true", help="retry 503 Overloaded after Retry-After")
    p.add_argument("--timeout", type=float, default=300, help="per-request timeout in seconds")
    p.add_argument(
        "--api-key", default=os.environ.get("KOKORO_API_KEY"), help="Bearer key (env KOKORO_API_KEY)"
    )
    p.add_argument("--sample-interval", type=float, default=1.0, help="seconds between RSS samples")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min-success", type=float, default=0.995, help="target success rate (default 0.995)")
    p.add_argument("--max-growth", type=float, default=0.10, help="target memory growth (default 0.10)")
    p.add_argument("--mix", choices=sorted(MIXES), default="mixed",
                   help="request shapes: mixed lengths up to 10 sentences (default), or one sentence each")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = p.parse_args(argv)
    duration = args.duration if args.duration is not None or args.requests is not None else 60.0

    proc = None
    url, pid = args.url, args.pid
    if args.spawn:
        port = urlparse(url).port or 8880
        proc = _spawn(port)
        url, pid = f"http://127.0.0.1:{port}", proc.pid
    try:
        rep = run_load(
            url,
            clients=args.clients,
            duration=duration,
            requests=args.requests,
            pid=pid,
            retry_overloaded=args.retry_overloaded,
            timeout=args.timeout,
            seed=args.seed,
            sample_interval=args.sample_interval,
            api_key=args.api_key,
            progress=True,
            shapes=MIXES[args.mix],
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
    print_report(rep)
    if args.json:
        args.json.write_text(json.dumps(asdict(rep), indent=2))
    good = rep.ok(args.min_success, args.max_growth)
    print("targets: " + rep.verdict(args.min_success, args.max_growth))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
