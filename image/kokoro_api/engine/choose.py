"""``KOKORO_MODEL_VARIANT=auto``: time the int8, float and fast variants on this CPU once, keep the fastest.

Which variant is faster depends on the CPU: on an Intel Sapphire Rapids VM the float decoder took 10-25 %
less time than the int8 graph, on an AMD EPYC (Zen 4) VM the two were equal with 2 threads and float was
15 % slower with 1; ``fast`` (static int8 generator convolutions, engine/static_quant.py) needs u8 x s8
integer kernels to pay off (docs/performance.md). So ``auto`` measures instead of guessing: the prepared
variants run the same fixed chunk, alternating, in a child process (several sessions at once would
otherwise stay in the server's memory). The child also compares each variant's output on that chunk with
int8's (engine/quality.py: same durations, loudness within 1 dB, no clipping, log-mel distance): ``fast``
is only eligible if it passes, so a CPU whose integer kernels misbehave keeps int8. A variant other than
int8 is kept only if it is at least :data:`MIN_GAIN` faster, because int8 is the shipped arithmetic (and
its session ~300 MB smaller than float's). The decision is cached per model, CPU, ONNX Runtime version and
thread count and whether the fused Snake op is available (``<cache>/prepared/choice-*.json``), so it is
made once per node and cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .prepare import PrepareError, Variant, prepare_in_subprocess, source_digest

log = logging.getLogger(__name__)

#: A variant other than int8 must take at least this much less time than int8 to be chosen.
MIN_GAIN = 0.10
#: Rounds of runs of every variant; the order flips every round.
ROUNDS = 3
#: Timed in this order (int8 first: the reference the others are compared with).
CANDIDATES: tuple[Variant, ...] = ("int8", "float", "fast")
#: Variants that must pass the quality comparison with int8 to be eligible (float's arithmetic is int8's
#: weights in float kernels; its distance from int8 is what the thresholds are calibrated on).
GATED = ("fast",)
#: The timed chunk: "The quick brown fox jumps over the lazy dog, and then it rests." in Kokoro's phonemes
#: (~60 tokens, ~4 s of audio: long enough to be dominated by the decoder, as real chunks are).
PROBE_PHONEMES = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɔɡ, ænd ðˈɛn ɪt ɹˈɛsts."

#: Bump when the measurement changes, so that older decisions are made again.
CHOICE_VERSION = 2


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def choice_path(src: Path, cache_dir: Path, threads: int) -> Path:
    import onnxruntime as ort

    from .snake import library

    # the fused Snake op changes what fast is: a node that gains or loses the library measures again
    snake = "snake" if library() else "onnx"
    key = f"{cpu_name()}|{platform.machine()}|{ort.__version__}|{threads}|{CHOICE_VERSION}|{snake}"
    digest = source_digest(Path(src), Path(cache_dir))[:16]
    name = f"choice-{digest}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    return Path(cache_dir) / "prepared" / name


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".choice-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def probe_ids() -> list[int]:
    from ..text.g2p import vocab

    table = vocab()
    return [table[c] for c in PROBE_PHONEMES if c in table]


def time_variants(models: dict[str, Path], threads: int, row: np.ndarray, rounds: int = ROUNDS) -> dict:
    """Time the probe chunk on each model, alternating (blocking; loads every model), and compare outputs.

    ``row`` is the voice's style vector for the probe's length (256 floats). Returns ``{"seconds": {name:
    [s, ...]}, "quality": {name: quality.Comparison.as_dict()}}``; quality compares each model but the
    first (the reference, int8) with the first.
    """
    from .pool import EnginePool
    from .quality import compare

    ids = probe_ids()
    pools = {name: EnginePool(path, 1, threads) for name, path in models.items()}
    first = {name: pool.run(ids, row, 1.0) for name, pool in pools.items()}  # allocations, kernel selection
    ref_name = next(iter(pools))
    ref = first[ref_name]
    quality = {
        name: compare(ref.audio, ref.durations, out.audio, out.durations).as_dict()
        for name, out in first.items() if name != ref_name
    }
    times: dict[str, list[float]] = {name: [] for name in pools}
    order = list(pools)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            pools[name].run(ids, row, 1.0)
            times[name].append(time.perf_counter() - t0)
    return {"seconds": times, "quality": quality}


def pick(medians: dict[str, float], quality: dict[str, dict]) -> Variant:
    """The fastest eligible variant: int8, or another that is MIN_GAIN faster (and, if gated, passed)."""

    def eligible(v: str) -> bool:
        if v == "int8":
            return True
        passed = v not in GATED or not quality.get(v, {"problems": ["not compared"]})["problems"]
        return passed and medians[v] <= (1 - MIN_GAIN) * medians["int8"]

    return min((v for v in medians if eligible(v)), key=lambda v: medians[v])  # type: ignore[return-value]


def choose_variant(
    src: Path,
    cache_dir: Path,
    threads: int,
    style: np.ndarray,
    prepare: Callable[[Path, Path, Variant], Path] = prepare_in_subprocess,
) -> tuple[Variant, Path]:
    """The variant ``auto`` runs on this machine and its prepared path (measured once, then cached).

    ``style`` is a voice's (510, 1, 256) style array; the probe uses its row for the probe's length.
    A variant that cannot be prepared (say ``fast`` on a source without the generator's structure) is
    left out of the race with a warning; int8 is always in it.
    """
    src, cache_dir = Path(src), Path(cache_dir)
    record = choice_path(src, cache_dir, threads)
    with contextlib.suppress(OSError, ValueError, KeyError):
        variant = json.loads(record.read_text())["variant"]
        if variant in CANDIDATES:
            return variant, prepare(src, cache_dir, variant)
    paths = {}
    for v in CANDIDATES:
        try:
            paths[v] = prepare(src, cache_dir, v)
        except PrepareError as exc:
            if v == "int8":
                raise
            log.warning("variant %s cannot be prepared (%s); not timed", v, exc)
    row = np.asarray(style, dtype=np.float32).reshape(-1, 256)[len(probe_ids()) - 1]
    job = {"models": {k: os.fspath(p) for k, p in paths.items()}, "threads": threads, "style": row.tolist()}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", __name__],
        input=json.dumps(job),
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:  # cannot measure: run the shipped arithmetic
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        log.warning("variant timing failed (%s); using int8", lines[-1] if lines else proc.returncode)
        return "int8", paths["int8"]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    times, quality = result["seconds"], result["quality"]
    medians = {k: statistics.median(v) for k, v in times.items()}
    variant = pick(medians, quality)
    _write_json(record, {
        "variant": variant, "seconds": times, "median": medians, "quality": quality, "cpu": cpu_name(),
        "threads": threads, "min_gain": MIN_GAIN, "measured_in_s": round(time.perf_counter() - t0, 1),
    })
    log.info("model variant auto -> %s (probe chunk: %s; %s, %d threads)", variant,
             ", ".join(f"{k} {m:.2f} s" for k, m in medians.items()), cpu_name(), threads)
    for v in GATED:
        if v in quality and quality[v]["problems"]:
            log.warning("variant %s differs from int8 on this machine (%s); not used",
                        v, "; ".join(quality[v]["problems"]))
    for v, p in paths.items():  # ~90-260 MB each that this machine will not use (the cache may be in RAM)
        if v not in (variant, "int8"):
            with contextlib.suppress(OSError):
                p.unlink()
    return variant, paths[variant]


if __name__ == "__main__":  # python -m kokoro_api.engine.choose < {"models", "threads", "style"} as JSON
    try:
        job = json.load(sys.stdin)
        out = time_variants({k: Path(p) for k, p in job["models"].items()}, int(job["threads"]),
                            np.asarray(job["style"], dtype=np.float32))
        print(json.dumps(out))
    except Exception as exc:  # one line for the parent's log
        print((str(exc).splitlines() or [type(exc).__name__])[0][:300], file=sys.stderr)
        sys.exit(2)
