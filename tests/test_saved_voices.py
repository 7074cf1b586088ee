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


# --- a saved-voices file of the wrong shape never breaks synthesis (issue 21)

BAD_FILES = {
    "voices_is_a_list": json.dumps({"voices": ["af_bella"]}),
    "top_level_list": json.dumps([{"voices": {}}]),
    "deep_nesting": '{"voices": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "garbage": "\x00\xffnot json at all",
    "mix_not_a_string": json.dumps({"version": 1, "voices": {"duo": {"mix": MIX}}}),
    "unknown_version": json.dumps({"version": 99, "voices": {}}),
    "bad_scope": json.dumps({"version": 2, "voices": {}, "scopes": {"../x": {}}}),
}


def _store(tmp_path):
    from helpers import voices_path
    from kokoro_api.voices import VoiceStore, load_bundle

    return VoiceStore(load_bundle(voices_path()))


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_file_is_quarantined_at_start_and_at_runtime(tmp_path, name):
    import numpy as np

    store = _store(tmp_path)
    (tmp_path / "saved_voices.json").write_bytes(BAD_FILES[name].encode("utf-8", "surrogatepass"))
    store.attach(tmp_path)  # was a StartupError: a crash-looping pod
    assert store.quarantined == 1 and "set aside" in store.problem
    assert not (tmp_path / "saved_voices.json").exists()
    assert len(list(tmp_path.glob("saved_voices.json.bad-*"))) == 1  # kept for the operator, not deleted
    assert store.style("af_heart").shape == (510, 1, 256)
    assert store.save_mix("duo", MIX) is True  # saving works again and writes a good file
    # the file turns bad while running (another replica, a hand edit): built-ins keep working
    time.sleep(0.01)
    (tmp_path / "saved_voices.json").write_bytes(BAD_FILES[name].encode("utf-8", "surrogatepass"))
    np.testing.assert_array_equal(store.style("af_heart"), store.style("af_heart"))
    assert store.quarantined == 2
    assert store.saved == {"duo": MIX}  # what was loaded stays in memory


def test_the_service_keeps_serving_and_says_so_in_readyz(settings, tmp_path):
    (tmp_path / "voices").mkdir()
    with _app(settings, tmp_path) as c:
        _ready(c)
        (tmp_path / "voices" / "saved_voices.json").write_text(BAD_FILES["voices_is_a_list"])
        assert pcm(c, "af_heart")  # was: every synthesis a 500
        r = c.get("/readyz")
        assert r.status_code == 200 and "set aside" in r.json()["warnings"][0]
        assert "/" not in r.json()["warnings"][0].split("set aside as")[1]  # no absolute paths
        assert "kokoro_saved_voices_quarantined 1.0" in c.get("/metrics").text


def test_stale_temporary_files_are_removed_at_attach(tmp_path):
    import os

    stale = tmp_path / ".saved_voices.json.deadbeef.tmp"
    fresh = tmp_path / ".saved_voices.json.cafebabe.tmp"  # maybe another replica writing right now
    stale.write_text("{}")
    fresh.write_text("{}")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    _store(tmp_path).attach(tmp_path)
    assert not stale.exists() and fresh.exists()


def test_each_api_key_has_its_own_saved_mixes(settings, tmp_path):
    from pydantic import SecretStr

    from kokoro_api.app import create_app

    s = settings.model_copy(update={"voices_dir": tmp_path / "voices", "workers": 1, "warmup": False,
                                    "api_keys": SecretStr("alice-key-123,bob-key-4567")})
    alice = {"Authorization": "Bearer alice-key-123"}
    bob = {"Authorization": "Bearer bob-key-4567"}
    with TestClient(create_app(s)) as c:
        deadline = time.monotonic() + 240
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert c.post("/v1/audio/voices", json={"name": "mine", "mix": MIX}, headers=alice).status_code == 201
        # bob neither sees nor overwrites nor deletes alice's mix: his own "mine" is a new one
        assert c.get("/v1/audio/voices", headers=bob).json()["saved"] == []
        assert c.delete("/v1/audio/voices/mine", headers=bob).status_code == 404
        mine = {"name": "mine", "mix": "bf_emma"}
        assert c.post("/v1/audio/voices", json=mine, headers=bob).status_code == 201
        body = {"input": TEXT, "voice": "mine", "response_format": "pcm", "stream": False}
        a = c.post("/v1/audio/speech", json=body, headers=alice).content
        b = c.post("/v1/audio/speech", json=body, headers=bob).content
        assert a != b
        assert [v["mix"] for v in c.get("/v1/audio/voices", headers=alice).json()["saved"]] == [MIX]
    stored = json.loads((tmp_path / "voices" / "saved_voices.json").read_text())
    assert stored["version"] == 2 and stored["voices"] == {} and len(stored["scopes"]) == 2
    assert "alice-key-123" not in json.dumps(stored)  # scopes are one-way ids, never keys
