#!/usr/bin/env python3
"""Side-by-side benchmark: kokoro-onnx 0.6.1 (reference) vs our engine in-process vs our HTTP service.

Same model file (the assembled int8 Kokoro v1.0 export), same voice (af_heart), same texts. Contenders are
alternated (the order flips every repeat) and repeated; we report the median and the spread (min-max)
and every ratio against the reference (a):

  (a) ref     kokoro-onnx ``Kokoro(model, voices).create(text, voice, lang="en-us")`` in this process
  (b) engine  our ``Runtime(settings).load()`` + ``Synthesizer.synthesize`` / ``segments`` in this process
  (c) http    a real ``kokoro-api serve`` subprocess on 127.0.0.1, driven with httpx (streamed PCM)

Metrics: real-time factor (wall / audio seconds) for a sentence, a 100-word paragraph and 500 words; time
to first audio when streaming the paragraph; throughput (audio s per wall s) and p50/p95 latency at
concurrency 1, 2, 4, 10 with 12-word requests; peak RSS of the server (psutil, sampled) and of a fresh
reference process; start-up to ready. Writes ``bench.json``, ``bench.md`` and ``bench.png`` into ``--out``.

    python scripts/bench.py                 # full run (~20 min on 2 vCPU), writes docs/bench/
    python scripts/bench.py --quick --out /tmp/b   # one repeat of short texts: checks that it all runs

Needs the ``bench`` extra (kokoro-onnx==0.6.1, matplotlib, psutil) and a voice bundle (KOKORO_VOICES_PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 24_000
VOICE = "af_heart"
CONTENDERS = ("ref", "engine", "http")
LABELS = {
    "ref": "(a) kokoro-onnx 0.6.1",
    "engine": "(b) our engine, in-process",
    "http": "(c) our HTTP service",
}

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs back into the quiet forest."
PARAGRAPH = (
    "Kokoro is an open-weight text to speech model with eighty-two million parameters. Despite its "
    "lightweight architecture, it delivers quality comparable to much larger models, while being "
    "significantly faster and more cost efficient. With Apache licensed weights, it can be deployed "
    "anywhere, from production environments to personal projects. This service wraps it in a small HTTP "
    "API that streams audio as soon as the first words are ready, so listeners hear speech almost at "
    "once, even when the text is long and the machine is modest."
)
SHORT_REQUEST = "Please remind me to call the office tomorrow morning at nine o'clock sharp."  # 12 words
LONG_PARTS = [
    PARAGRAPH,
    "The history of speech synthesis goes back further than most people think. Mechanical talking "
    "machines were built in the eighteenth century, using bellows, reeds and leather tubes to imitate the "
    "human vocal tract. In the twentieth century, electronic devices such as the vocoder showed that speech "
    "could be analysed into a few slowly changing parameters and rebuilt from them. Later systems joined "
    "small recorded units of speech together, and for a long time this was the most natural sounding "
    "approach available, although it needed large databases and careful tuning.",
    "Neural networks changed the field again. Instead of joining recordings, a model learns to predict the "
    "sound of speech directly from text, one small frame at a time. The first such systems were slow and "
    "needed powerful graphics cards, but steady improvements made them smaller and faster. Today a model "
    "with fewer than a hundred million parameters can read a page of text aloud on an ordinary laptop "
    "processor, in a voice that many listeners find pleasant and clear.",
    "Running such a model as a service raises practical questions. How many requests can one machine serve "
    "at the same time? How quickly does the first sound arrive after a request is sent? How much memory "
    "does each worker need, and how should the work be split between threads? The answers depend on the "
    "hardware, on the length of the texts, and on how the text is cut into pieces before it reaches the "
    "model. Short pieces start sooner and use less memory, while longer pieces waste less time on the "
    "fixed cost of each call.",
    "This benchmark measures these things side by side, with the same model file, the same voice and the "
    "same texts for every contender. Each measurement is repeated, the contenders take turns, and the "
    "report gives the median together with the spread, so that a noisy neighbour on a shared machine does "
    "not decide the result. The numbers are ratios first and absolute times second, because ratios "
    "measured in one run on one machine are the fairest comparison we can make.",
]


def five_hundred_words() -> str:
    words = " ".join(LONG_PARTS).split()
    while len(words) < 500:
        words += words
    text = " ".join(words[:500])
    return text if text.endswith(".") else text + "."


# ------------------------------------------------------------------------------------------------- helpers


def stats(xs: list[float]) -> dict:
    xs = [float(x) for x in xs]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), p)) if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_voices() -> Path:
    env = os.environ.get("KOKORO_VOICES_PATH")
    return Path(env) if env else ROOT.parent / "shared" / "kokoro" / "voices-v1.0-en.npz"


def default_cache() -> Path:
    env = os.environ.get("KOKORO_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "kokoro-api"


class RssSampler:
    """Peak RSS of one process, sampled every ``interval`` s in a thread (psutil)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except Exception:
                return
            self._stop.wait(self.interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


# --------------------------------------------------------------------------------------------- contenders


class Ref:
    """(a) kokoro-onnx, in-process."""

    name = "ref"

    def __init__(self, model: Path, voices: Path) -> None:
        from kokoro_onnx import Kokoro

        t0 = time.perf_counter()
        self.kokoro = Kokoro(str(model), str(voices))
        self.load_s = time.perf_counter() - t0

    def synth(self, text: str) -> float:
        audio, sr = self.kokoro.create(text, VOICE, lang="en-us")
        return len(audio) / sr

    def ttfa(self, text: str) -> float:
        async def first() -> float:
            t0 = time.perf_counter()
            stream = self.kokoro.create_stream(text, VOICE, lang="en-us")
            async for _audio, _sr in stream:
                break
            dt = time.perf_counter() - t0
            await stream.aclose()
            return dt

        return asyncio.run(first())

    def close(self) -> None:
        pass

    def concurrent(self, text: str, n: int, c: int) -> tuple[list[float], float, float, int]:
        def one(_: int) -> tuple[float, float]:
            t0 = time.perf_counter()
            secs = self.synth(text)
            return time.perf_counter() - t0, secs

        t0 = time.perf_counter()
        with ThreadPoolExecutor(c) as ex:
            res = list(ex.map(one, range(n)))
        return [r[0] for r in res], sum(r[1] for r in res), time.perf_counter() - t0, 0


class Engine:
    """(b) our engine, in-process."""

    name = "engine"

    def __init__(self, voices: Path, cache: Path) -> None:
        from kokoro_api.config import Settings
        from kokoro_api.runtime import Runtime

        self.settings = Settings(voices_path=voices, cache_dir=cache)
        t0 = time.perf_counter()
        self.runtime = Runtime(self.settings)
        self.runtime.load()
        self.load_s = time.perf_counter() - t0
        self.loop = asyncio.new_event_loop()

    @property
    def synthesizer(self):
        return self.runtime.synthesizer

    def synth(self, text: str) -> float:
        seg = self.loop.run_until_complete(self.synthesizer.synthesize(text, VOICE, 1.0))
        return seg.seconds

    def ttfa(self, text: str) -> float:
        async def first() -> float:
            t0 = time.perf_counter()
            gen = self.synthesizer.segments(text, VOICE, 1.0, short_first=True)
            async for _seg in gen:
                break
            dt = time.perf_counter() - t0
            await gen.aclose()
            return dt

        return self.loop.run_until_complete(first())

    def concurrent(self, text: str, n: int, c: int) -> tuple[list[float], float, float, int]:
        async def run() -> tuple[list[float], float, float, int]:
            sem = asyncio.Semaphore(c)

            async def one() -> tuple[float, float]:
                async with sem:
                    t0 = time.perf_counter()
                    seg = await self.synthesizer.synthesize(text, VOICE, 1.0)
                    return time.perf_counter() - t0, seg.seconds

            t0 = time.perf_counter()
            res = await asyncio.gather(*(one() for _ in range(n)))
            return [r[0] for r in res], sum(r[1] for r in res), time.perf_counter() - t0, 0

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.runtime.close()
        self.loop.close()


class Http:
    """(c) a real ``kokoro-api serve`` subprocess; every request is streamed 16-bit PCM."""

    name = "http"

    def __init__(self, voices: Path, cache: Path, log: Path) -> None:
        self.voices, self.cache, self.log_path = voices, cache, log
        self.ready_s: list[float] = []
        self.proc: subprocess.Popen | None = None
        self.rss: RssSampler | None = None
        self.peak_rss_mb = 0.0
        self.start()

    def start(self) -> float:
        import httpx

        port = free_port()
        env = dict(
            os.environ,
            KOKORO_VOICES_PATH=str(self.voices),
            KOKORO_CACHE_DIR=str(self.cache),
            KOKORO_LOG_LEVEL="warning",
        )
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kokoro_api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.rss = RssSampler(self.proc.pid)
        self.url = f"http://127.0.0.1:{port}"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > 300:
                raise RuntimeError(f"server not ready in 300 s; see {self.log_path}")
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        self.ready_s.append(dt)
        self.client = httpx.Client(base_url=self.url, timeout=600)
        return dt

    def stop(self) -> None:
        self.client.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.rss:
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss.stop())

    def restart(self) -> float:
        self.stop()
        return self.start()

    @staticmethod
    def body(text: str) -> dict:
        return {
            "model": "kokoro",
            "input": text,
            "voice": VOICE,
            "response_format": "pcm",
            "stream_format": "audio",
        }

    def synth(self, text: str) -> float:
        n = 0
        with self.client.stream("POST", "/v1/audio/speech", json=self.body(text)) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                n += len(chunk)
        return n / 2 / SR

    def ttfa(self, text: str) -> float:
        t0 = time.perf_counter()
        with self.client.stream("POST", "/v1/audio/speech", json=self.body(text)) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                if chunk:
                    return time.perf_counter() - t0
        raise RuntimeError("no audio")

    def concurrent(self, text: str, n: int, c: int) -> tuple[list[float], float, float, int]:
        import httpx

        async def run() -> tuple[list[float], float, float, int]:
            sem = asyncio.Semaphore(c)
            errors = 0

            async with httpx.AsyncClient(base_url=self.url, timeout=600) as client:

                async def one() -> tuple[float, float] | None:
                    nonlocal errors
                    async with sem:
                        t0 = time.perf_counter()
                        size = 0
                        async with client.stream("POST", "/v1/audio/speech", json=self.body(text)) as r:
                            if r.status_code != 200:
                                errors += 1
                                await r.aread()
                                return None
                            async for chunk in r.aiter_bytes():
                                size += len(chunk)
                        return time.perf_counter() - t0, size / 2 / SR

                t0 = time.perf_counter()
                res = [r for r in await asyncio.gather(*(one() for _ in range(n))) if r]
                return [r[0] for r in res], sum(r[1] for r in res), time.perf_counter() - t0, errors

        return asyncio.run(run())

    def close(self) -> None:
        self.stop()


def reference_rss(model: Path, voices: Path, text: str) -> float:
    """Peak RSS (MB) of a fresh process that loads kokoro-onnx and synthesizes ``text`` once."""
    code = (
        "import resource,sys\nfrom kokoro_onnx import Kokoro\n"
        f"k=Kokoro(sys.argv[1],sys.argv[2])\nk.create(sys.stdin.read(),'{VOICE}',lang='en-us')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(model), str(voices)],
        input=text,
        text=True,
        capture_output=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ running


def orders(repeat: int) -> tuple[str, ...]:
    """Rotate and flip the contender order every repeat, so that none always runs first or last."""
    k = repeat % len(CONTENDERS)
    order = CONTENDERS[k:] + CONTENDERS[:k]
    return order if repeat % 2 == 0 else order[::-1]


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from kokoro_api.engine.model import resolve_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = resolve_model(args.model, args.cache_dir, progress=True)
    texts = {"sentence": SENTENCE, "paragraph": PARAGRAPH, "500 words": five_hundred_words()}
    if args.quick:
        texts = {"sentence": SENTENCE, "paragraph": " ".join(PARAGRAPH.split()[:30])}
    repeats, long_repeats = (1, 1) if args.quick else (args.repeats, args.long_repeats)
    if long_repeats == 0:
        texts.pop("500 words", None)
    levels = [1, 2] if args.quick else [1, 2, 4, 10]
    factor = 1 if args.quick else args.requests_factor

    def requests_at(c: int) -> int:
        return max(c, round(factor * c))

    def dump(phase: str) -> None:  # partial results after every phase, in case a long run is cut short
        partial = dict(result, phase=phase, partial_rtf=rtf, partial_ttfa=ttfa, partial_concurrency=conc)
        (out / "bench.partial.json").write_text(json.dumps(partial, indent=1, default=str) + "\n")

    rtf: dict = {}
    ttfa: dict = {}
    conc: dict = {}
    ttfa_text = texts["paragraph"]

    result: dict = {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "quick": args.quick,
            "repeats": repeats,
            "long_repeats": long_repeats,
            "requests_factor": factor,
            "model": str(model),
            "voice": VOICE,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "load_before": os.getloadavg(),
            "words": {k: len(v.split()) for k, v in texts.items()},
            "short_request_words": len(SHORT_REQUEST.split()),
        }
    }
    try:
        import kokoro_onnx
        import onnxruntime

        from kokoro_api.config import Settings

        s = Settings(voices_path=args.voices, cache_dir=args.cache_dir)
        result["meta"].update(
            onnxruntime=onnxruntime.__version__,
            kokoro_onnx=getattr(kokoro_onnx, "__version__", "0.6.1"),
            workers=s.workers,
            intra_op_threads=s.intra_op_threads,
            model_variant=s.model_variant,
        )
    except Exception:
        pass

    print(f"model {model}; voices {args.voices}; repeats {repeats} (500 words: {long_repeats})", flush=True)
    log = out / "server.log" if not args.quick else Path(args.out) / "server.log"
    log.unlink(missing_ok=True)
    contenders = {
        "ref": Ref(model, args.voices),
        "engine": Engine(args.voices, args.cache_dir),
        "http": Http(args.voices, args.cache_dir, log),
    }
    # which prepared file `auto` chose (kokoro-<sha>-<variant>-v<n>.onnx: int8, float, fast8[s]/fast7[s])
    prepared = contenders["engine"].runtime.model_path
    result["meta"]["prepared_model"] = prepared.name if prepared else None
    try:
        load = {"ref": [contenders["ref"].load_s], "engine": [contenders["engine"].load_s]}
        # Warm-up: one short synthesis each (first-call costs are start-up, not steady state).
        for c in contenders.values():
            c.synth(SENTENCE)

        # Phases run cheapest-first so that an interrupted run (Ctrl-C: finish with what was measured) still
        # has every kind of number: short-text RTF, TTFA, concurrency (highest level first), long-text RTF.
        rtf.update({t: {c: [] for c in CONTENDERS} for t in texts})
        ttfa.update({c: [] for c in CONTENDERS})
        conc.update({c: {} for c in CONTENDERS})
        audio_s: dict[str, dict[str, float]] = {t: {} for t in texts}

        def rtf_phase(names: list[str], desc: str) -> None:
            jobs = [(t, r) for t in names for r in range(long_repeats if t == "500 words" else repeats)]
            for text_name, r in tqdm(jobs, desc=desc, unit="round"):
                for name in orders(r):
                    t0 = time.perf_counter()
                    secs = contenders[name].synth(texts[text_name])
                    rtf[text_name][name].append((time.perf_counter() - t0) / secs)
                    audio_s[text_name][name] = secs
                dump("rtf")

        rtf_phase(["sentence"], "real-time factor, sentence")

        # --- time to first audio (streaming the paragraph)
        for r in tqdm(range(repeats), desc="time to first audio", unit="round"):
            for name in orders(r):
                ttfa[name].append(contenders[name].ttfa(ttfa_text))
                time.sleep(0.2)  # let an aborted stream's worker finish its chunk
            dump("ttfa")

        # --- concurrency (12-word requests), highest level first
        bar = tqdm(total=len(levels) * len(CONTENDERS), desc="concurrency", unit="run")
        for i, level in enumerate(sorted(levels, reverse=True)):
            for name in orders(i):
                lat, secs, wall, errors = contenders[name].concurrent(
                    SHORT_REQUEST, requests_at(level), level
                )
                conc[name][str(level)] = {
                    "requests": requests_at(level),
                    "errors": errors,
                    "throughput": secs / wall,
                    "p50": pct(lat, 50),
                    "p95": pct(lat, 95),
                    "wall_s": wall,
                    "audio_s": secs,
                }
                bar.update()
                dump("concurrency")
        bar.close()

        rtf_phase([t for t in texts if t != "sentence"], "real-time factor, long texts")

        # --- start-up to ready (server restarts; the first start is counted too)
        http: Http = contenders["http"]  # type: ignore[assignment]
        for _ in tqdm(
            range(0 if args.quick else args.ready_repeats - 1), desc="server restarts", unit="start"
        ):
            http.restart()
    except KeyboardInterrupt:
        result["meta"]["interrupted"] = True
        print("interrupted: reporting what was measured", flush=True)
    finally:
        for c in contenders.values():
            c.close()
    load["http"] = list(contenders["http"].ready_s)  # type: ignore[attr-defined]
    peak_server = contenders["http"].peak_rss_mb  # type: ignore[attr-defined]
    rss_text = (
        "sentence"
        if result["meta"].get("interrupted")
        else ("500 words" if "500 words" in texts else "paragraph")
    )
    ref_rss = reference_rss(model, args.voices, texts[rss_text])
    result["meta"]["ref_rss_text"] = rss_text
    # Keep only what every contender completed (an interrupted run may have a level or text half done).
    rtf = {t: d for t, d in rtf.items() if all(d[c] for c in CONTENDERS)}
    conc = {c: {k: v for k, v in d.items() if all(k in conc[o] for o in CONTENDERS)} for c, d in conc.items()}
    levels = sorted(int(k) for k in conc["ref"])

    result["rtf"] = {t: {c: stats(v) for c, v in d.items()} for t, d in rtf.items()}
    result["audio_seconds"] = audio_s
    result["ttfa_s"] = {c: stats(v) for c, v in ttfa.items()}
    result["concurrency"] = conc
    result["ready_s"] = {c: stats(v) for c, v in load.items()}
    result["peak_rss_mb"] = {"http_server": peak_server, "ref_process": ref_rss}
    result["meta"]["load_after"] = os.getloadavg()
    result["ratios_vs_ref"] = ratios(result, levels)
    return result


def ratios(r: dict, levels: list[int]) -> dict:
    def ratio(a, b):
        return None if a is None or not b else a / b

    if not r["ttfa_s"]["ref"]["n"] or any(not r["ttfa_s"][c]["n"] for c in CONTENDERS):
        r["ttfa_s"] = {c: stats([]) for c in CONTENDERS}

    out: dict = {"rtf": {}, "throughput": {}, "p95": {}}
    for t, d in r["rtf"].items():
        out["rtf"][t] = {c: ratio(d[c]["median"], d["ref"]["median"]) for c in ("engine", "http")}
    out["ttfa"] = {
        c: ratio(r["ttfa_s"][c]["median"], r["ttfa_s"]["ref"]["median"]) for c in ("engine", "http")
    }
    for lv in levels:
        k = str(lv)
        ref = r["concurrency"]["ref"][k]
        out["throughput"][k] = {
            c: ratio(r["concurrency"][c][k]["throughput"], ref["throughput"]) for c in ("engine", "http")
        }
        out["p95"][k] = {c: ratio(r["concurrency"][c][k]["p95"], ref["p95"]) for c in ("engine", "http")}
    out["http_overhead_rtf"] = {
        t: ratio(d["http"]["median"], d["engine"]["median"]) for t, d in r["rtf"].items()
    }
    out["rss_server_vs_ref_process"] = ratio(r["peak_rss_mb"]["http_server"], r["peak_rss_mb"]["ref_process"])
    return out


# ------------------------------------------------------------------------------------------------ reports


def fmt(x, spec=".3f") -> str:
    return "–" if x is None else format(x, spec)


def spread(s: dict, spec=".3f") -> str:
    return f"{fmt(s['median'], spec)} ({fmt(s['min'], spec)}–{fmt(s['max'], spec)})"


def markdown(r: dict) -> str:
    m, q = r["meta"], r["ratios_vs_ref"]
    lines = [
        "# Benchmark: kokoro-onnx vs our engine vs our HTTP service",
        "",
        f"{m['when']} · {m['cpus']} CPUs ({m['machine']}) · onnxruntime {m.get('onnxruntime', '?')} · "
        f"workers {m.get('workers', '?')} × intra-op threads {m.get('intra_op_threads', '?')}, variant "
        f"`{m.get('model_variant', '?')}` (ran `{m.get('prepared_model') or '?'}`) · voice {m['voice']} · "
        f"repeats {m['repeats']} "
        f"(500 words: {m['long_repeats']}){' · QUICK MODE' if m['quick'] else ''} · load average before "
        f"{m['load_before'][0]:.1f}, after {m['load_after'][0]:.1f}",
        "",
        "Median (min–max). Ratios are against (a); below 1 is better for times, above 1 for throughput.",
        "",
        "## Real-time factor (wall s per audio s, lower is better)",
        "",
        "| text | words | " + " | ".join(LABELS[c] for c in CONTENDERS) + " | (b)/(a) | (c)/(a) | (c)/(b) |",
        "|---|---:|" + "---|" * len(CONTENDERS) + "---:|---:|---:|",
    ]
    for t, d in r["rtf"].items():
        lines.append(
            f"| {t} | {m['words'][t]} | "
            + " | ".join(spread(d[c]) for c in CONTENDERS)
            + f" | {fmt(q['rtf'][t]['engine'], '.2f')} | {fmt(q['rtf'][t]['http'], '.2f')} | "
            f"{fmt(q['http_overhead_rtf'][t], '.2f')} |"
        )
    lines += [
        "",
        "## Time to first audio, streaming the paragraph (s)",
        "",
        "| " + " | ".join(LABELS[c] for c in CONTENDERS) + " | (b)/(a) | (c)/(a) |",
        "|" + "---|" * len(CONTENDERS) + "---:|---:|",
        "| "
        + " | ".join(spread(r["ttfa_s"][c]) for c in CONTENDERS)
        + f" | {fmt(q['ttfa']['engine'], '.2f')} | {fmt(q['ttfa']['http'], '.2f')} |",
        "",
        "(a) streams with `create_stream` (one model call per up to 510 phonemes); (b) and (c) send a short "
        "first chunk.",
        "",
        f"## Concurrency: {m['short_request_words']}-word requests",
        "",
        "| concurrency | contender | requests | errors | throughput (audio s / s) | p50 latency (s) "
        "| p95 latency (s) | throughput vs (a) | p95 vs (a) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in sorted(r["concurrency"]["ref"], key=int):
        for c in CONTENDERS:
            d = r["concurrency"][c][lv]
            tq = "1" if c == "ref" else fmt(q["throughput"][lv][c], ".2f")
            pq = "1" if c == "ref" else fmt(q["p95"][lv][c], ".2f")
            lines.append(
                f"| {lv} | {LABELS[c]} | {d['requests']} | {d['errors']} | {d['throughput']:.2f} | "
                f"{d['p50']:.2f} | {d['p95']:.2f} | {tq} | {pq} |"
            )
    rss = r["peak_rss_mb"]
    lines += [
        "",
        "## Memory and start-up",
        "",
        f"- Peak RSS of the HTTP server over the whole run (all texts, concurrency up to "
        f"{max((int(k) for k in r['concurrency']['ref']), default=0)}): **{rss['http_server']:.0f} MB**",
        f"- Peak RSS of a fresh kokoro-onnx process synthesizing the {r['meta'].get('ref_rss_text')} once: "
        f"{rss['ref_process']:.0f} MB",
        f"- Start-up to ready: (a) `Kokoro()` {spread(r['ready_s']['ref'], '.2f')} s; (b) `Runtime.load()` "
        f"{spread(r['ready_s']['engine'], '.2f')} s; (c) process start to `/readyz` 200 "
        f"{spread(r['ready_s']['http'], '.2f')} s (warm cache; includes the warm-up synthesis)",
        "",
    ]
    return "\n".join(lines)


def chart(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ref": "#9e9e9e", "engine": "#1f77b4", "http": "#ff7f0e"}
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    texts = list(r["rtf"])
    x = np.arange(len(texts))
    w = 0.27
    ax = axes[0]
    for i, c in enumerate(CONTENDERS):
        med = [r["rtf"][t][c]["median"] for t in texts]
        lo = [m - r["rtf"][t][c]["min"] for t, m in zip(texts, med, strict=True)]
        hi = [r["rtf"][t][c]["max"] - m for t, m in zip(texts, med, strict=True)]
        ax.bar(x + (i - 1) * w, med, w, yerr=[lo, hi], capsize=3, color=colors[c], label=LABELS[c])
    ax.set_xticks(x, texts)
    ax.set_ylabel("wall s / audio s")
    ax.set_title("Real-time factor (lower is better)")
    ax.legend(fontsize=8)

    ax = axes[1]
    med = [r["ttfa_s"][c]["median"] or 0.0 for c in CONTENDERS]
    err = [
        [m - (r["ttfa_s"][c]["min"] or 0.0) for c, m in zip(CONTENDERS, med, strict=True)],
        [(r["ttfa_s"][c]["max"] or 0.0) - m for c, m in zip(CONTENDERS, med, strict=True)],
    ]
    ax.bar(range(3), med, yerr=err, capsize=3, color=[colors[c] for c in CONTENDERS])
    ax.set_xticks(range(3), ["(a) ref", "(b) engine", "(c) http"])
    ax.set_ylabel("s")
    ax.set_title("Time to first audio, paragraph")

    levels = sorted(r["concurrency"]["ref"], key=int)
    for ax, key, title in (
        (axes[2], "throughput", "Throughput (audio s / wall s)"),
        (axes[3], "p95", f"p95 latency, {r['meta']['short_request_words']}-word requests (s)"),
    ):
        for c in CONTENDERS:
            ax.plot(
                [int(v) for v in levels],
                [r["concurrency"][c][v][key] for v in levels],
                "o-",
                color=colors[c],
                label=LABELS[c],
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks([int(v) for v in levels], levels)
        ax.set_xlabel("concurrent requests")
        ax.set_title(title)
    fig.suptitle(
        f"Kokoro-82M int8 on {r['meta']['cpus']} CPUs: kokoro-onnx vs kokoro-api ({r['meta']['when']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(r: dict) -> str:
    q = r["ratios_vs_ref"]
    parts = ["ratios vs (a) kokoro-onnx:"]
    for t, d in q["rtf"].items():
        parts.append(f"  RTF {t:10s} engine {fmt(d['engine'], '.2f')}  http {fmt(d['http'], '.2f')}")
    parts.append(
        f"  TTFA paragraph engine {fmt(q['ttfa']['engine'], '.2f')}  http {fmt(q['ttfa']['http'], '.2f')}"
        f"  (absolute: http {fmt(r['ttfa_s']['http']['median'], '.2f')} s, "
        f"ref {fmt(r['ttfa_s']['ref']['median'], '.2f')} s)"
    )
    for lv, d in q["throughput"].items():
        parts.append(
            f"  c={lv:>2} throughput engine {fmt(d['engine'], '.2f')} http {fmt(d['http'], '.2f')}"
            f"   p95 engine {fmt(q['p95'][lv]['engine'], '.2f')} http {fmt(q['p95'][lv]['http'], '.2f')}"
        )
    parts.append(
        f"  server peak RSS {r['peak_rss_mb']['http_server']:.0f} MB (ref process "
        f"{r['peak_rss_mb']['ref_process']:.0f} MB); ready {r['ready_s']['http']['median']:.2f} s"
    )
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "bench", help="output folder (default docs/bench)"
    )
    p.add_argument(
        "--quick", action="store_true", help="one repeat of short texts, concurrency 1-2 (a smoke run)"
    )
    p.add_argument(
        "--repeats", type=int, default=5, help="repeats of the sentence, paragraph and TTFA (default 5)"
    )
    p.add_argument(
        "--long-repeats", type=int, default=1, help="repeats of the 500-word text (default 1; 0 skips it)"
    )
    p.add_argument(
        "--requests-factor",
        type=float,
        default=2.0,
        help="requests per concurrency level = factor x level, at least the level (default 2)",
    )
    p.add_argument("--ready-repeats", type=int, default=3, help="server starts measured (default 3)")
    p.add_argument("--model", type=Path, default=None, help="model (default: the assembled int8 export)")
    p.add_argument("--voices", type=Path, default=default_voices())
    p.add_argument("--cache-dir", type=Path, default=default_cache())
    p.add_argument("--render", type=Path, help="only rebuild bench.md and bench.png from this bench.json")
    args = p.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        (args.render.parent / "bench.md").write_text(markdown(result))
        chart(result, args.render.parent / "bench.png")
        print(summary(result))
        return 0
    t0 = time.perf_counter()
    result = run(args)
    result["meta"]["bench_seconds"] = time.perf_counter() - t0
    (args.out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "bench.md").write_text(markdown(result))
    (args.out / "bench.partial.json").unlink(missing_ok=True)
    chart(result, args.out / "bench.png")
    print(summary(result))
    print(
        f"wrote {args.out}/bench.json, bench.md, bench.png in {result['meta']['bench_seconds'] / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
