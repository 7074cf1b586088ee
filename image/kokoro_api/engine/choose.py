"""``KOKORO_MODEL_VARIANT=auto``: time the int8 and float variants on this CPU once, keep the faster.

Which variant is faster depends on the CPU: on an Intel Sapphire Rapids VM the float decoder took 10-25 %
less time than the int8 graph, on an AMD EPYC (Zen 4) VM the two were equal with 2 threads and float was
15 % slower with 1 (docs/performance.md). So ``auto`` measures instead of guessing: both prepared variants
run the same fixed chunk, alternating, in a child process (two sessions at once would otherwise stay in the
server's memory), and float is kept only if it is at least :data:`MIN_GAIN` faster, because int8 is the
shipped arithmetic and its session is ~300 MB smaller. The decision is cached per model, CPU, ONNX Runtime
version and thread count (``<cache>/prepared/choice-*.json``), so it is made once per node and cache.
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

from .prepare import Variant, prepare_in_subprocess, source_digest

log = logging.getLogger(__name__)

#: float must take at least this much less time than int8 to be chosen.
MIN_GAIN = 0.10
#: Rounds of (int8, float) runs; the order flips every round.
ROUNDS = 3
#: The timed chunk: "The quick brown fox jumps over the lazy dog, and then it rests." in Kokoro's phonemes
#: (~60 tokens, ~4 s of audio: long enough to be dominated by the decoder, as real chunks are).
PROBE_PHONEMES = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɔɡ, ænd ðˈɛn ɪt ɹˈɛsts."

#: Bump when the measurement changes, so that older decisions are made again.
CHOICE_VERSION = 1


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def choice_path(src: Path, cache_dir: Path, threads: int) -> Path:
    import onnxruntime as ort

    key = f"{cpu_name()}|{platform.machine()}|{ort.__version__}|{threads}|{CHOICE_VERSION}"
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
    """Seconds per run of the probe chunk for each model, alternating (blocking; loads every model).

    ``row`` is the voice's style vector for the probe's length (256 floats).
    """
    from .pool import EnginePool

    ids = probe_ids()
    pools = {name: EnginePool(path, 1, threads) for name, path in models.items()}
    for pool in pools.values():  # first run: allocations and kernel selection, not timed
        pool.run(ids, row, 1.0)
    times: dict[str, list[float]] = {name: [] for name in pools}
    order = list(pools)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            pools[name].run(ids, row, 1.0)
            times[name].append(time.perf_counter() - t0)
    return times


def choose_variant(
    src: Path,
    cache_dir: Path,
    threads: int,
    style: np.ndarray,
    prepare: Callable[[Path, Path, Variant], Path] = prepare_in_subprocess,
) -> tuple[Variant, Path]:
    """The variant ``auto`` runs on this machine and its prepared path (measured once, then cached).

    ``style`` is a voice's (510, 1, 256) style array; the probe uses its row for the probe's length.
    """
    src, cache_dir = Path(src), Path(cache_dir)
    record = choice_path(src, cache_dir, threads)
    with contextlib.suppress(OSError, ValueError, KeyError):
        variant = json.loads(record.read_text())["variant"]
        if variant in ("int8", "float"):
            return variant, prepare(src, cache_dir, variant)
    paths = {v: prepare(src, cache_dir, v) for v in ("int8", "float")}
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
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    medians = {k: statistics.median(v) for k, v in times.items()}
    variant: Variant = "float" if medians["float"] <= (1 - MIN_GAIN) * medians["int8"] else "int8"
    _write_json(record, {
        "variant": variant, "seconds": times, "median": medians, "cpu": cpu_name(), "threads": threads,
        "min_gain": MIN_GAIN, "measured_in_s": round(time.perf_counter() - t0, 1),
    })
    log.info("model variant auto -> %s (probe chunk: int8 %.2f s, float %.2f s, %s, %d threads)",
             variant, medians["int8"], medians["float"], cpu_name(), threads)
    if variant == "int8":  # ~260 MB that this machine will not use (the cache may be a RAM-backed emptyDir)
        with contextlib.suppress(OSError):
            paths["float"].unlink()
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
