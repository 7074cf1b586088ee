"""Named voice mixes (POST/DELETE /v1/audio/voices), persisted atomically; KOKORO_DEFAULT_VOICE."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from helpers import assert_error

MIX = "af_bella(2)+af_sky(1)"
TEXT = "Saved voices."


def pcm(client, voice: str | None) -> bytes:
    body = {"input": TEXT, "response_format": "pcm", "stream": False}
    if voice is not None:
        body["voice"] = voice
    r = client.post("/v1/audio/speech", json=body)
    assert r.status_code == 200, r.text
    return r.content


def test_save_use_replace_delete(client):
    r = client.post("/v1/audio/voices", json={"name": "my_duo", "mix": MIX})
    assert r.status_code == 201, r.text
    assert r.json()["language"] == "en-us"
    try:
        assert pcm(client, "my_duo") == pcm(client, MIX)
        saved = client.get("/v1/audio/voices").json()["saved"]
        assert {"name": "my_duo", "mix": MIX, "language": "en-us"} in saved
        ok = client.post("/synthesize", json={"text": TEXT, "voice_id": "my_duo", "language": "en-us"})
        assert ok.status_code == 200
        assert client.post("/v1/audio/voices", json={"name": "my_duo", "mix": "bf_emma"}).status_code == 200
        assert pcm(client, "my_duo") == pcm(client, "bf_emma")  # replaced, cache invalidated
        # a saved name can itself be part of an inline mix
        assert pcm(client, "my_duo(1)+af_sky(1)") == pcm(client, "bf_emma+af_sky")
    finally:
        assert client.delete("/v1/audio/voices/my_duo").json() == {"name": "my_duo", "deleted": True}
    assert_error(client.delete("/v1/audio/voices/my_duo"), 404, "NotFound")
    gone = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "my_duo"})
    assert_error(gone, 400, "InvalidVoice")


@pytest.mark.parametrize("name,mix", [
    ("af_heart", "af_bella"),  # a built-in
    ("", "af_bella"),
    ("../escape", "af_bella"),
    ("has space", "af_bella"),
    ("x" * 65, "af_bella"),
    ("ok_name", "af_nobody"),
    ("ok_name", "af_bella(-2)"),
    ("ok_name", ""),
])
def test_invalid_saves_are_400(client, name, mix):
    assert_error(client.post("/v1/audio/voices", json={"name": name, "mix": mix}), 400, "InvalidVoice")


def test_saved_mix_uses_builtins_only_and_builtins_are_protected(client):
    assert client.post("/v1/audio/voices", json={"name": "base_mix", "mix": "af_sky"}).status_code == 201
    try:
        nested = client.post("/v1/audio/voices", json={"name": "nested", "mix": "base_mix+af_bella"})
        err = assert_error(nested, 400)
        assert "base_mix" in err["message"]
    finally:
        client.delete("/v1/audio/voices/base_mix")
    err = assert_error(client.delete("/v1/audio/voices/af_heart"), 400, "InvalidVoice")
    assert "built-in" in err["message"]
    assert "af_heart" in {v["id"] for v in client.get("/v1/audio/voices").json()["voices"]}


def _app(settings, tmp_path):
    from kokoro_api.app import create_app

    s = settings.model_copy(update={"voices_dir": tmp_path / "voices", "workers": 1, "warmup": False,
                                    "default_voice": "bf_emma", "audio_dir": tmp_path / "audio"})
    return TestClient(create_app(s))


def _ready(c: TestClient) -> None:
    deadline = time.monotonic() + 240
    while c.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, c.get("/readyz").text
        time.sleep(0.2)


def test_saved_mix_survives_restart_and_default_voice(settings, tmp_path, client):
    inline = pcm(client, MIX)
    with _app(settings, tmp_path) as first:
        _ready(first)
        assert first.post("/v1/audio/voices", json={"name": "duo", "mix": MIX}).status_code == 201
        assert first.post("/v1/audio/voices", json={"name": "gone", "mix": "af_sky"}).status_code == 201
        assert first.delete("/v1/audio/voices/gone").status_code == 200
        # KOKORO_DEFAULT_VOICE: a request without a voice speaks with it
        assert pcm(first, None) == pcm(first, "bf_emma") != pcm(first, "af_heart")
        # the lifespan's audio directory (KOKORO_AUDIO_DIR) serves download links
        r = first.post("/v1/audio/speech", json={"input": TEXT, "return_download_link": True})
        assert first.get(r.headers["x-download-path"]).content == r.content
        name = r.headers["x-download-path"].rsplit("/", 1)[1]
        assert name in {p.name for p in (tmp_path / "audio").iterdir()}
    stored = json.loads((tmp_path / "voices" / "saved_voices.json").read_text())
    assert stored["voices"] == {"duo": MIX}
    # no temp files (the lock file stays: removing it would race with a process about to lock it)
    assert sorted(p.name for p in (tmp_path / "voices").iterdir()) == [".saved_voices.lock", "saved_voices.json"]
    with _app(settings, tmp_path) as second:
        _ready(second)
        saved = second.get("/v1/audio/voices").json()["saved"]
        assert {"name": "duo", "mix": MIX, "language": "en-us"} in saved
        assert pcm(second, "duo") == inline


def test_replicas_sharing_a_directory_see_each_others_mixes(tmp_path):
    """Two stores on one directory (two pods on a ReadWriteMany volume): a save on one is usable on the
    other at once, a delete too, and concurrent saves from both lose nothing (flock + re-read)."""
    import threading

    import numpy as np

    from helpers import voices_path
    from kokoro_api.voices import VoiceStore, load_bundle

    bundle = load_bundle(voices_path())
    a, b = VoiceStore(bundle), VoiceStore(bundle)
    a.attach(tmp_path)
    b.attach(tmp_path)
    assert a.save_mix("duo", MIX) is True
    np.testing.assert_array_equal(b.style("duo"), a.style(MIX))
    assert b.saved == {"duo": MIX}
    assert b.save_mix("duo", "bf_emma") is False  # b knows it exists: a replace, not a new save
    np.testing.assert_array_equal(a.style("duo"), a.style("bf_emma"))  # a's cache was invalidated
    assert b.delete_mix("duo") is True
    assert a.saved == {} and a.delete_mix("duo") is False

    def save_many(store: VoiceStore, prefix: str) -> None:
        for i in range(25):
            store.save_mix(f"{prefix}{i}", "af_sky(1)+af_bella(1)")

    threads = [threading.Thread(target=save_many, args=(s, p)) for s, p in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = {f"{p}{i}" for p in "ab" for i in range(25)}
    assert set(a.saved) == set(b.saved) == want
    fresh = VoiceStore(bundle)
    fresh.attach(tmp_path)
    assert set(fresh.saved) == want
    assert not list(tmp_path.glob(".saved_voices.json.*.tmp"))
