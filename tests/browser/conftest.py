"""Fixtures for the studio tests: a live ``kokoro-api serve`` and Debian's Chromium via chromedriver.

Nothing is mocked and nothing is downloaded: the browser is /usr/bin/chromium driven by
/usr/bin/chromedriver (selenium-manager is never asked for a driver), and the server is the real one on a
free 127.0.0.1 port. ``KOKORO_STUDIO_URL=http://host:port`` points the tests at a server that is already
running instead (handy while working on the page).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = os.environ.get("KOKORO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KOKORO_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
DEFAULT_VOICES = "/work/shared/kokoro/voices-v1.0-en.npz"
READY_TIMEOUT_S = float(os.environ.get("KOKORO_TEST_READY_TIMEOUT", "300"))


def _unavailable(msg: str) -> None:
    """Skip, unless this machine must run the browser tests (CI sets KOKORO_REQUIRE_BROWSER=1): then fail."""
    if os.environ.get("KOKORO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser tests are required here (KOKORO_REQUIRE_BROWSER=1) but {msg}")
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _voices_path() -> str | None:
    for candidate in (
        os.environ.get("KOKORO_VOICES_PATH"),
        str(REPO.parent / "shared" / "kokoro" / "voices-v1.0-en.npz"),
        DEFAULT_VOICES,
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _serve_command(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("kokoro-api")
    if exe.exists():
        return [str(exe), "serve", "--port", str(port)]
    found = shutil.which("kokoro-api")
    if found:
        return [found, "serve", "--port", str(port)]
    return [sys.executable, "-m", "kokoro_api.cli", "serve", "--port", str(port)]


def _wait_ready(base: str, proc: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"kokoro-api serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except Exception as exc:  # noqa: BLE001 - still starting
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT_S:.0f} s ({last}):\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def _serve(tmp_dir: Path, **extra_env: str):
    """Run ``kokoro-api serve`` on a free 127.0.0.1 port until the block ends; yields its base URL."""
    voices = _voices_path()
    if voices is None:
        _unavailable("there is no voice bundle (set KOKORO_VOICES_PATH)")
    port = _free_port()
    log = tmp_dir / "kokoro-api.log"
    env = dict(os.environ, KOKORO_VOICES_PATH=voices, KOKORO_HOST="127.0.0.1", KOKORO_PORT=str(port))
    env.update(extra_env)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _serve_command(port), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, log)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def server_url(tmp_path_factory):
    existing = os.environ.get("KOKORO_STUDIO_URL")
    if existing:
        yield existing.rstrip("/")
        return
    with _serve(tmp_path_factory.mktemp("server")) as base:
        yield base


API_KEY = "studio-test-key-0123456789"


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


@pytest.fixture(scope="module")
def keyed_server_url(tmp_path_factory):
    """A second server that requires ``Authorization: Bearer API_KEY`` on /v1/*."""
    if os.environ.get("KOKORO_STUDIO_URL"):
        pytest.skip("KOKORO_STUDIO_URL points at a running server")
    with _serve(tmp_path_factory.mktemp("keyed-server"), KOKORO_API_KEYS=API_KEY, KOKORO_WORKERS="1") as base:
        yield base


class Browser:
    """A Chromium session with its own profile and download directory."""

    def __init__(self, driver, download_dir: Path):
        self.driver = driver
        self.download_dir = download_dir


def _make_driver(profile: Path, downloads: Path, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    opts.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
        },
    )
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        _unavailable(f"Debian's chromium and chromium-driver are missing ({CHROMIUM}, {CHROMEDRIVER})")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[dev]')")
    # Never let selenium-manager fetch a browser or driver.
    os.environ["SE_OFFLINE"] = "true"
    root = tmp_path_factory.mktemp("chromium")
    profile = Path(tempfile.mkdtemp(prefix="profile-", dir=root))
    downloads = root / "downloads"
    downloads.mkdir()
    driver = _make_driver(profile, downloads, 1366, 1000)
    try:
        yield Browser(driver, downloads)
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
