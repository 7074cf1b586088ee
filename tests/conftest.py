"""Shared fixtures: settings pointing at the real model and voices, an in-process app, a live server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from helpers import LiveServer, cache_dir, live_server, voices_path


def pytest_configure(config: pytest.Config) -> None:
    """Tools the tests run write plain text: a CI runner that forces colour must not put ANSI codes in the
    output the tests read (go-task colours even when its stdout is a pipe once FORCE_COLOR is set)."""
    os.environ["NO_COLOR"] = "1"
    for name in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS", "TTY_COMPATIBLE"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def settings():
    from kokoro_api.config import Settings

    return Settings(voices_path=voices_path(), cache_dir=cache_dir())


@pytest.fixture(scope="session")
def client(settings):
    """An in-process app (real model), ready."""
    from fastapi.testclient import TestClient

    from kokoro_api.app import create_app

    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 240
        while c.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail(f"app not ready: {c.get('/readyz').json()}")
            time.sleep(0.2)
        yield c


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """A live ``kokoro-api serve`` subprocess shared by the session."""
    with live_server(tmp_path_factory.mktemp("server")) as s:
        yield s

