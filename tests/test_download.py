"""Download links: audio kept in KOKORO_AUDIO_DIR under random names, capped by size and age."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from helpers import assert_error
from kokoro_api.storage import AudioStore

TEXT = "Keep this for later."


@contextmanager
def using(client, store: AudioStore) -> Iterator[AudioStore]:
    state = client.app.state
    old = getattr(state, "audio_store", None)
    state.audio_store = store
    try:
        yield store
    finally:
        state.audio_store = old


@pytest.fixture
def store(client, tmp_path):
    """A private audio directory for the session app (1 MB, 1 hour)."""
    with using(client, AudioStore(tmp_path / "audio", 1024 * 1024, 3600)) as s:
        yield s


def fetch(client, path: str, body: bytes, media: str, ext: str) -> None:
    assert path.startswith("/v1/download/")
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.content == body
    assert r.headers["content-type"] == media
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment;") and disposition.rstrip('"').endswith(f".{ext}")


def test_speech_download_round_trip(client, store):
    body = {"input": TEXT, "response_format": "flac", "return_download_link": True, "stream": False}
    r = client.post("/v1/audio/speech", json=body)
    assert r.headers["content-length"] == str(len(r.content))
    assert r.status_code == 200
    path = r.headers["x-download-path"]
    name = path.rsplit("/", 1)[1]
    assert len(name.split(".")[0]) >= 22  # 128 random bits
    fetch(client, path, r.content, "audio/flac", "flac")
    assert [p.name for p in store.root.iterdir()] == [name]  # no temporary files left behind
    plain = client.post("/v1/audio/speech", json={"input": TEXT, "response_format": "flac"})
    assert "x-download-path" not in plain.headers


def test_streamed_download_round_trip(client, store):
    body = {"input": TEXT, "response_format": "mp3", "stream_format": "audio", "return_download_link": True}
    r = client.post("/v1/audio/speech", json=body)
    assert r.status_code == 200
    fetch(client, r.headers["x-download-path"], r.content, "audio/mpeg", "mp3")


def test_native_and_batch_download_links(client, store):
    r = client.post("/synthesize", json={"text": TEXT, "output_format": "ogg", "return_download_link": True})
    assert r.status_code == 200
    fetch(client, r.headers["x-download-path"], r.content, "audio/ogg", "ogg")
    items = [{"text": "One.", "output_format": "wav", "return_download_link": True},
             {"text": "Two.", "output_format": "wav"}]
    out = client.post("/synthesize/batch", json={"items": items}).json()
    fetch(client, out[0]["download_url"], base64.b64decode(out[0]["audio"]), "audio/wav", "wav")
    assert "download_url" not in out[1]
    batch = {"items": items, "concatenate": True, "return_download_link": True}
    joined = client.post("/synthesize/batch", json=batch)
    fetch(client, joined.headers["x-download-path"], joined.content, "audio/wav", "wav")


def test_full_directory_is_507_and_service_keeps_serving(client, tmp_path):
    body = {"input": TEXT, "response_format": "wav", "return_download_link": True, "stream": False}
    with using(client, AudioStore(tmp_path / "tiny", 1000, 3600)):
        assert_error(client.post("/v1/audio/speech", json=body), 507, "InsufficientStorage")
        native = {"text": TEXT, "output_format": "wav", "return_download_link": True}
        assert_error(client.post("/synthesize", json=native), 507, "InsufficientStorage")
        plain = {**body, "return_download_link": False}
        assert client.post("/v1/audio/speech", json=plain).status_code == 200
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    with using(client, AudioStore(blocked, 10**6, 3600)):
        assert_error(client.post("/v1/audio/speech", json=body), 507, "InsufficientStorage")
        # a streamed response checks that the directory is usable before it starts
        streamed = client.post("/v1/audio/speech", json={**body, "stream": True})
        assert_error(streamed, 507, "InsufficientStorage")


@pytest.mark.parametrize("path", [
    "/v1/download/..%2F..%2Fetc%2Fpasswd",
    "/v1/download/%2e%2e",
    "/v1/download/....%2F%2Fsecret.txt",
    "/v1/download/secret.txt",
    "/v1/download/AAAAAAAAAAAAAAAAAAAAAA.mp3",  # the right shape, never written
    "/v1/download/AAAAAAAAAAAAAAAAAAAAAA.mp3%00.txt",
])
def test_traversal_and_unknown_names_are_404(client, store, path):
    (store.root / "secret.txt").write_text("not for download")
    (store.root.parent / "passwd").write_text("outside")
    r = client.get(path)
    assert r.status_code == 404
    assert "not for download" not in r.text and "outside" not in r.text


def test_eviction_oldest_first_by_size(tmp_path):
    s = AudioStore(tmp_path, 1000, 3600)
    names = []
    for i in range(3):
        names.append(s.save(bytes([i]) * 400, "mp3"))
        os.utime(s.root / names[-1], (time.time() - 100 + i, time.time() - 100 + i))
    # 3 x 400 > 1000: the first (oldest) was evicted to make room for the third
    assert s.path(names[0]) is None and s.path(names[1]) and s.path(names[2])
    assert s.used_bytes() == 800
    big = s.save(b"x" * 1000, "wav")  # evicts everything else
    assert s.used_bytes() == 1000 and s.path(big)
    with pytest.raises(Exception) as exc:
        s.save(b"x" * 1001, "wav")
    assert getattr(exc.value, "status", None) == 507


def test_expiry_by_age(tmp_path):
    s = AudioStore(tmp_path, 10**6, 60)
    old, new = s.save(b"old", "mp3"), s.save(b"new", "mp3")
    past = time.time() - 120
    os.utime(s.root / old, (past, past))
    (s.root / ".tmp-stale").write_bytes(b"half")
    os.utime(s.root / ".tmp-stale", (past, past))
    assert s.path(old) is None  # expired files are not served even before the cleanup runs
    assert s.cleanup() == 2
    assert sorted(p.name for p in s.root.iterdir()) == [new]
    assert 1 <= s.cleanup_interval_s <= 60


def test_session_app_has_an_audio_store(client):
    assert isinstance(client.app.state.audio_store, AudioStore)


@contextmanager
def read_only_mount(path) -> Iterator[None]:
    """A real tmpfs at ``path``, writable until ``remount_ro(path)``; skipped where mounting is not
    allowed (an unprivileged runner)."""
    import subprocess

    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the read-only disk case is not exercised")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_ro(path) -> None:
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def test_read_only_directory_is_507_and_streams_stay_whole(client, tmp_path):
    """A read-only download directory: 507 (was a 500 from the temp file's cleanup), and a stream whose
    file cannot be kept still ends properly (was: its last chunk lost)."""
    from helpers import decode

    ro = tmp_path / "ro"
    body = {"input": TEXT, "response_format": "wav", "return_download_link": True, "stream": False}
    with read_only_mount(ro):
        store = AudioStore(ro, 10**6, 3600)  # writable at start-up
        remount_ro(ro)  # then the volume turns read-only (or full) under the running service
        with using(client, store):
            assert_error(client.post("/v1/audio/speech", json=body), 507, "InsufficientStorage")
            assert_error(client.post("/synthesize", json={"text": TEXT, "output_format": "wav",
                                                          "return_download_link": True}),
                         507, "InsufficientStorage")
            r = client.post("/v1/audio/speech", json={**body, "stream": True})
            assert r.status_code == 200
            samples, rate = decode(r.content)  # the whole WAV arrived, its last chunk included
            plain = client.post("/v1/audio/speech",
                                json={**body, "stream": True, "return_download_link": False}).content
            assert len(samples) == len(decode(plain)[0]) and rate == 24_000
            assert client.get(r.headers["x-download-path"]).status_code == 404
        # read-only from the start: found at start-up, a 507 before any audio
        with using(client, AudioStore(ro, 10**6, 3600)):
            assert_error(client.post("/v1/audio/speech", json={**body, "stream": True}), 507,
                         "InsufficientStorage")
