"""scripts/bench.py in quick mode: it runs all three contenders and writes JSON, Markdown and a PNG.

The benchmark is not a test: this only checks that it runs and that its outputs exist and parse.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT, server_env

pytest.importorskip("kokoro_onnx")
pytest.importorskip("matplotlib")
pytest.importorskip("psutil")


def test_bench_quick(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--out", str(out)],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "ratios vs (a) kokoro-onnx" in proc.stdout

    data = json.loads((out / "bench.json").read_text())
    assert data["meta"]["quick"] is True
    for text in ("sentence", "paragraph"):
        for contender in ("ref", "engine", "http"):
            rtf = data["rtf"][text][contender]
            assert rtf["n"] == 1 and 0 < rtf["median"] < 20
    for contender in ("ref", "engine", "http"):
        assert data["ttfa_s"][contender]["median"] > 0
        for level in ("1", "2"):
            run = data["concurrency"][contender][level]
            assert run["errors"] == 0 and run["throughput"] > 0 and run["p95"] >= run["p50"] > 0
    assert data["peak_rss_mb"]["http_server"] > 100
    assert data["ready_s"]["http"]["median"] > 0
    assert set(data["ratios_vs_ref"]) >= {"rtf", "ttfa", "throughput", "p95"}

    md = (out / "bench.md").read_text()
    assert "Real-time factor" in md and "Time to first audio" in md and "Concurrency" in md
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
