"""The podman tests share one image build per session: `podman_image` creates the base image and builds
`localhost/kokoro-api:e2e` once (podman's layer cache makes an unchanged tree's rebuild take seconds), and
both the Deployment test (test_podman.py) and the compose test (test_compose.py) run that image.

Skipped only when podman is not installed, and never then in CI: with CI set or KOKORO_REQUIRE_E2E=1 a
missing tool is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def required() -> bool:
    return os.environ.get("KOKORO_REQUIRE_E2E") == "1" or os.environ.get("CI", "").lower() in (
        "1",
        "true",
        "yes",
    )


def e2e_script():
    """scripts/e2e_podman.py as a module (its build steps are the ones the image test has always used)."""
    spec = importlib.util.spec_from_file_location("e2e_podman", ROOT / "scripts" / "e2e_podman.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def podman_available():
    missing = [t for t in ("podman", "runc", "catatonit", "debootstrap") if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed (apt-get install podman runc catatonit debootstrap)"
        if required():
            pytest.fail(f"the e2e tests are required here (CI / KOKORO_REQUIRE_E2E=1) but {msg}")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def podman_image(podman_available) -> str:
    """The image tag, built once per session from this tree (base image first, if missing)."""
    e2e = e2e_script()
    t0 = time.monotonic()
    e2e.ensure_base_image()
    t1 = time.monotonic()
    e2e.build_image(e2e.IMAGE, e2e.default_voices(), ROOT)
    print(f"podman_image: base image {t1 - t0:.0f} s, build {time.monotonic() - t1:.0f} s -> {e2e.IMAGE}")
    return e2e.IMAGE
