"""The README's configuration table matches the Settings model; its newcomer commands work as written in a
fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from helpers import decode, rms, voices_path

ROOT = Path(__file__).resolve().parents[1]


def test_config_table_in_sync():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_doc.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "./dev serve" in head and "./dev test" in head
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci


# ------------------------------------------------------------------ the README's commands, in a fresh clone



def _fenced(readme: str, lang: str, must_contain: str) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", readme, re.S)
    (block,) = [b for b in blocks if must_contain in b]
    return block


def _fresh_clone(dest: Path) -> Path:
    """The files a clone would have: git's tracked files (and new, not ignored ones) as they are now."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _venv_sharing_these_packages(clone: Path) -> None:
    """An empty .venv that sees this interpreter's packages (a path line in a .pth, so their own .pth files,
    such as this checkout's editable install, are not read). ./dev then runs its real install step, which
    finds every dependency present and installs only the clone itself: no ~1 GB download in a test."""
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True, capture_output=True)
    site = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_shared_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_commands_work_as_written_in_a_fresh_clone(tmp_path):
    """./dev serve (its install step included), the curl and Python examples, ./dev say and ./dev models:
    each as the README writes it (only the port is changed, 8880 may be taken), in a copy of the repository
    with no .venv and no ../shared next to it (the voices come from KOKORO_VOICES_PATH, as documented)."""
    readme = (ROOT / "README.md").read_text()
    say_cmd, models_cmd = './dev say "Some text" -o out.mp3', "./dev models"
    assert say_cmd in readme and models_cmd in readme
    curl = _fenced(readme, "sh", "curl ")
    python = _fenced(readme, "python", "OpenAI(")
    clone = _fresh_clone(tmp_path / "kokoro-api")
    _venv_sharing_these_packages(clone)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOKORO_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(KOKORO_VOICES_PATH=str(voices_path()), PATH=os.defpath + ":" + os.environ.get("PATH", ""))
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(["./dev", "serve", "--port", str(port)], cwd=clone, env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = f"ready: http://127.0.0.1:{port}  studio: /web/  docs: /docs"
        deadline = time.monotonic() + 600
        while ready not in log.read_text(errors="replace"):
            assert serve.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        said = log.read_text(errors="replace")
        assert "dev: installing the project" in said and "Successfully installed kokoro-api" in said, said[:2000]
        url = f"127.0.0.1:{port}"
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", curl.replace("127.0.0.1:8880", url)], cwd=clone,
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", python.replace("127.0.0.1:8880", url)],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        for cmd in (say_cmd, models_cmd):
            r = subprocess.run(["bash", "-c", cmd], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"{cmd}: {r.stdout}\n{r.stderr}"
        assert "voices:   " in r.stdout and "missing" not in r.stdout, r.stdout
        for name in ("hello.mp3", "speech.mp3", "out.mp3"):
            samples, rate = decode((clone / name).read_bytes())
            assert rate == 24000 and len(samples) > rate // 2 and rms(samples) > 0.01, name
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


def test_models_says_the_voices_are_missing_not_that_the_model_is_corrupt(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KOKORO_VOICES_PATH"}
    env["KOKORO_CACHE_DIR"] = str(Path(os.environ.get("KOKORO_CACHE_DIR") or Path.home() / ".cache" / "kokoro-api"))
    if (Path(env["KOKORO_CACHE_DIR"]) / "voices").exists():
        pytest.skip("this cache holds pulled voices")
    r = subprocess.run([sys.executable, "-m", "kokoro_api.cli", "models"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "voices:   missing" in r.stdout and "KOKORO_VOICES_PATH" in r.stdout, r.stdout
    assert "corrupt" not in r.stdout + r.stderr
