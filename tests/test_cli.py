"""`kokoro-api say`: a real process speaking into a file, its progress bar on a terminal, and its errors."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from helpers import decode, rms, server_env

SAY = [sys.executable, "-m", "kokoro_api.cli", "say"]


def say(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*SAY, *args], env=server_env(), capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.parametrize("name", ["hello.wav", "hello.mp3", "hello.ogg"])
def test_say_writes_speech_in_the_format_of_the_extension(tmp_path, name):
    out = tmp_path / name
    proc = say("Hello from the command line. This is Kokoro speaking.", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stderr
    samples, rate = decode(out.read_bytes())
    assert rate == 24000
    assert 2.0 < len(samples) / rate < 8.0  # ~9 words
    assert rms(samples) > 0.02  # speech, not silence


def test_say_reads_stdin_with_a_mix_and_speed(tmp_path):
    out = tmp_path / "mix.wav"
    proc = say("-", "-o", str(out), "-v", "af_bella(2)+am_adam(1)", "-s", "1.5", input="Mixed voices, faster.")
    assert proc.returncode == 0, proc.stderr
    samples, rate = decode(out.read_bytes())
    assert 0.5 < len(samples) / rate < 3.0 and rms(samples) > 0.02


def test_say_shows_progress_on_a_terminal(tmp_path):
    """tqdm draws only on a TTY: run with the child's stderr on a pseudo-terminal."""
    out = tmp_path / "long.wav"
    text = " ".join(["This sentence is one of several, so the bar has steps to draw."] * 4)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([*SAY, text, "-o", str(out)], env=server_env(), stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(300) == 0, seen.decode(errors="replace")[-2000:]
    text_seen = seen.decode(errors="replace")
    assert "speaking" in text_seen and "100%" in text_seen, text_seen[-2000:]
    assert decode(out.read_bytes())[0].size > 24000 * 8


@pytest.mark.parametrize(
    "args,message",
    [
        (["Hi.", "-o", "{tmp}/out.txt"], "cannot tell the audio format"),
        (["Hi.", "-o", "{tmp}/out.wav", "-s", "9"], "--speed must be within"),
        (["   ", "-o", "{tmp}/out.wav"], "no text to speak"),
        (["Hi.", "-o", "{tmp}/out.wav", "-v", "nobody"], "nobody"),
        (["Hi.", "-o", "{tmp}/out.wav", "-v", "af_bella(0)"], "Weight of voice"),
        (["\u200b\u200b", "-o", "{tmp}/out.wav"], ""),
    ],
)
def test_say_errors_are_one_line_without_a_traceback(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = say(*args, timeout=180)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("kokoro-api: ") and message in proc.stderr, proc.stderr[-2000:]
    assert not list(Path(tmp_path).glob("out.*")), "no half-written file is left behind"


def test_say_needs_no_network(tmp_path):
    """Fully offline: in a network namespace with only a downed loopback (no route anywhere), the model,
    the G2P (spaCy, misaki, espeak-ng) and the voices load and speak; nothing tries a download."""
    probe = ["unshare", "-n", "true"] if os.geteuid() == 0 else ["unshare", "-rn", "true"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare)")
    out = tmp_path / "offline.wav"
    cmd = [*probe[:-1], *SAY, "No network is needed to speak.", "-o", str(out)]
    proc = subprocess.run(cmd, env=server_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples, rate = decode(out.read_bytes())
    assert len(samples) / rate > 1.0 and rms(samples) > 0.02


def test_a_bad_setting_is_named_with_its_value_and_reason_without_a_traceback():
    """What an operator sees when .env (compose) or the Deployment sets a bad value: exit 2, one line per
    variable, before anything is loaded."""
    env = {**server_env(), "KOKORO_WORKERS": "0", "KOKORO_MAX_QUEUE_WAIT_S": "ten", "KOKORO_API_KEYS": "k"}
    serve = [sys.executable, "-m", "kokoro_api.cli", "serve"]
    proc = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "kokoro-api: invalid settings (environment variables):"
    assert "  KOKORO_WORKERS='0': Input should be greater than or equal to 1" in lines
    bad_number = "  KOKORO_MAX_QUEUE_WAIT_S='ten': Input should be a valid number"
    assert any(line.startswith(bad_number) for line in lines), lines
    assert len(lines) == 3, lines  # the valid key is neither reported nor echoed
