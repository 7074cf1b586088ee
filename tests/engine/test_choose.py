"""``KOKORO_MODEL_VARIANT=auto``: the prepared variants are timed on this CPU, the fastest is kept, cached.

Real models, real ONNX Runtime sessions in the real child process; the prepared files are copied from
the shared cache into a temporary one so that the chooser may delete the variant it does not keep.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest

from helpers import cache_dir, voices_path


@pytest.fixture(scope="module")
def prepared() -> dict[str, Path]:
    from kokoro_api.engine.model import resolve_model
    from kokoro_api.engine.prepare import prepare_in_subprocess

    source = resolve_model(None, cache_dir())
    variants = ("int8", "float", "fast")
    return {"source": source} | {v: prepare_in_subprocess(source, cache_dir(), v) for v in variants}


@pytest.fixture(scope="module")
def style() -> np.ndarray:
    from kokoro_api.voices import load_bundle

    return load_bundle(voices_path())["af_heart"]


def copying_prepare(prepared: dict[str, Path], calls: list[str], broken: set[str] = frozenset()):
    """A ``prepare`` for choose_variant that copies the shared cache's prepared files into ``cache``."""

    def prepare(src: Path, cache: Path, variant: str) -> Path:
        calls.append(variant)
        dst = Path(cache) / "prepared" / prepared[variant].name
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if variant in broken:
                dst.write_bytes(b"not an onnx model")
            else:
                shutil.copyfile(prepared[variant], dst)
        return dst

    return prepare


def test_auto_times_every_variant_and_keeps_the_fastest(prepared, style, tmp_path):
    from kokoro_api.engine.choose import CANDIDATES, MIN_GAIN, ROUNDS, choice_path, choose_variant

    calls: list[str] = []
    variant, path = choose_variant(prepared["source"], tmp_path, 2, style, copying_prepare(prepared, calls))
    assert sorted(calls) == sorted(CANDIDATES)
    record = json.loads(choice_path(prepared["source"], tmp_path, 2).read_text())
    assert record["variant"] == variant
    times = record["seconds"]
    assert sorted(times) == sorted(CANDIDATES)
    assert all(len(v) == ROUNDS and all(t > 0 for t in v) for v in times.values())
    medians = {k: statistics.median(v) for k, v in times.items()}
    # fast was compared with int8 on the probe chunk (engine/quality.py) and, here, passes
    fast = record["quality"]["fast"]
    assert fast["same_durations"] and fast["problems"] == [], fast
    eligible = [v for v in CANDIDATES if v == "int8" or medians[v] <= (1 - MIN_GAIN) * medians["int8"]]
    assert variant == min(eligible, key=medians.get), medians
    assert path.name == prepared[variant].name and path.is_file()
    for other in ("float", "fast"):  # an unused variant (~90-260 MB) is deleted; int8 is always kept
        assert (tmp_path / "prepared" / prepared[other].name).exists() == (variant == other)

    # the decision is cached: a second start prepares only the chosen variant and measures nothing
    calls.clear()
    assert choose_variant(prepared["source"], tmp_path, 2, style, copying_prepare(prepared, calls)) == (
        variant,
        path,
    )
    assert calls == [variant]
    # another thread count is another decision
    assert not choice_path(prepared["source"], tmp_path, 1).exists()


def test_auto_falls_back_to_int8_when_timing_fails(prepared, style, tmp_path):
    from kokoro_api.engine.choose import choice_path, choose_variant

    calls: list[str] = []
    prepare = copying_prepare(prepared, calls, broken={"float"})
    variant, path = choose_variant(prepared["source"], tmp_path, 1, style, prepare)
    assert (variant, path.name) == ("int8", prepared["int8"].name)
    # nothing is recorded, so the next start measures again (the failure may have been passing)
    assert not choice_path(prepared["source"], tmp_path, 1).exists()


def test_a_corrupt_record_is_measured_again(prepared, style, tmp_path):
    from kokoro_api.engine.choose import choice_path, choose_variant

    record = choice_path(prepared["source"], tmp_path, 1)
    record.parent.mkdir(parents=True)
    record.write_text("{not json")
    calls: list[str] = []
    variant, _ = choose_variant(prepared["source"], tmp_path, 1, style, copying_prepare(prepared, calls))
    assert sorted(calls) == ["fast", "float", "int8"]
    assert json.loads(record.read_text())["variant"] == variant


def test_fast_is_not_chosen_when_it_fails_the_quality_check():
    """The rule itself, on recorded numbers: a faster fast that differs from int8 loses to int8/float."""
    from kokoro_api.engine.choose import pick

    medians = {"int8": 1.0, "float": 0.95, "fast": 0.5}
    passed = {"fast": {"problems": []}}
    failed = {"fast": {"problems": ["log-mel distance 7.10 dB (limit 3.0)"]}}
    assert pick(medians, passed) == "fast"
    assert pick(medians, failed) == "int8"  # float is not 10 % faster either
    assert pick({**medians, "float": 0.8}, failed) == "float"
    assert pick(medians, {}) == "int8"  # never compared: not eligible
    assert pick({"int8": 1.0, "fast": 0.95}, passed) == "int8"  # under MIN_GAIN
