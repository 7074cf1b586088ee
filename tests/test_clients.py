"""Real clients, unchanged: the official OpenAI SDK with OpenAI's names, and the exact requests Open WebUI,
SillyTavern and Kokoro-FastAPI clients send (bodies and headers taken from their source), with and without
an API key.

- Open WebUI (backend/open_webui/routers/audio.py): lists ``GET {base}/audio/models`` -> ``{"models":
  [{"id"}]}`` and ``GET {base}/audio/voices`` -> ``{"voices": [{"id", "name"}]}`` *without* a key, then
  ``POST {base}/audio/speech`` with ``{"input", "voice", "model"}`` and ``Authorization: Bearer <key>``,
  reads the whole body as an .mp3, and on an error shows ``error.message`` of the JSON body.
- SillyTavern's "OpenAI Compatible" provider (its server proxy): ``POST <endpoint>`` with
  ``{"input", "response_format": "mp3", "voice", "speed", "model"}`` and ``Authorization: Bearer <key or
  ''>`` (an empty key when none is set).
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from helpers import assert_error, decode, live_server, rms

OPENAI_VOICES = ["alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"]
KEY = "replay-key-1"


def bearer(key: str | None) -> str:
    """``Bearer <key>``; with no key, ``Bearer`` (fetch trims the trailing space off ``Bearer `` on the wire)."""
    return f"Bearer {key or ''}".strip()


def open_webui(base: str, key: str) -> dict:
    """Open WebUI's three calls; returns what it would show."""
    models = httpx.get(f"{base}/audio/models", timeout=10)
    voices = httpx.get(f"{base}/audio/voices", timeout=10)
    models.raise_for_status()
    voices.raise_for_status()
    ids = [m["id"] for m in models.json().get("models", [])]
    names = {v["id"]: v["name"] for v in voices.json().get("voices", [])}
    r = httpx.post(f"{base}/audio/speech", json={"input": "Hello from Open WebUI.", "voice": "alloy", "model": ids[0]},
                   headers={"Content-Type": "application/json", "Authorization": bearer(key)}, timeout=120)
    return {"models": ids, "voices": names, "speech": r}


def sillytavern(endpoint: str, key: str | None, voice: str = "alloy", **extra) -> httpx.Response:
    body = {"input": "Hello from SillyTavern.", "response_format": "mp3", "voice": voice, "speed": 1,
            "model": "tts-1", **extra}
    return httpx.post(endpoint, json=body, timeout=120,
                      headers={"Content-Type": "application/json", "Authorization": bearer(key)})


def spoken_seconds(data: bytes) -> float:
    samples, rate = decode(data)
    assert rate == 24000 and rms(samples) > 0.01, "silent"
    return len(samples) / rate


# ------------------------------------------------------------------ the official SDK


def test_sdk_with_openai_names(server, tmp_path):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    out = tmp_path / "alloy.mp3"
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="The official client, with OpenAI's names.",
        instructions="Speak cheerfully.",
    ) as response:
        response.stream_to_file(out)
        assert response.headers["x-ignored-fields"] == "instructions"
    assert 1.0 < spoken_seconds(out.read_bytes()) < 6.0
    assert {m.id for m in client.models.list()} >= {"kokoro", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"}


def test_sdk_shows_the_error_message(server):
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="tts-1", voice="af_nobody", input="Hi")
    assert "Unknown voice 'af_nobody'" in str(exc.value), str(exc.value)
    assert exc.value.code == "invalid_voice" and exc.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi", speed=9)
    assert "speed" in str(exc.value) and exc.value.param == "speed"


def test_every_openai_voice_name_speaks_its_kokoro_voice(client):
    listed = {a["name"]: a["voice"] for a in client.get("/v1/audio/voices").json()["aliases"]}
    assert set(listed) == set(OPENAI_VOICES)
    for name in OPENAI_VOICES:
        r = client.post("/v1/audio/speech", json={"input": "Same voice.", "voice": name, "response_format": "pcm",
                                                  "stream": False})
        assert r.status_code == 200, r.text
        same = client.post("/v1/audio/speech", json={"input": "Same voice.", "voice": listed[name],
                                                     "response_format": "pcm", "stream": False})
        assert r.content == same.content, name  # the alias is exactly its voice (deterministic model)


def test_voice_aliases_are_configurable(settings, tmp_path):
    from fastapi.testclient import TestClient

    from kokoro_api.app import create_app

    custom = settings.model_copy(update={"voice_aliases": "narrator=af_bella(2)+af_sky(1)", "warmup": False})
    with TestClient(create_app(custom)) as c:
        while c.get("/readyz").status_code != 200:
            pass
        assert c.get("/v1/audio/voices").json()["aliases"] == [{"name": "narrator", "voice": "af_bella(2)+af_sky(1)"}]
        ok = c.post("/v1/audio/speech", json={"input": "Hi.", "voice": "narrator(1)+am_adam(1)", "stream": False})
        assert ok.status_code == 200, ok.text  # an alias works inside a mix too
        assert_error(c.post("/v1/audio/speech", json={"input": "Hi.", "voice": "alloy"}), 400, "InvalidVoice")


def test_a_bad_alias_table_stops_the_start(settings):
    from kokoro_api.errors import StartupError
    from kokoro_api.runtime import apply_aliases
    from kokoro_api.voices import VoiceStore, load_bundle

    store = VoiceStore(load_bundle(settings.voices_path))
    for bad, why in (("alloy", "name=voice"), ("alloy=af_nobody", "af_nobody")):
        with pytest.raises(StartupError, match=why):
            apply_aliases(store, bad)


# ------------------------------------------------------------------ Open WebUI and SillyTavern, replayed


def test_open_webui_and_sillytavern_without_a_key(server):
    seen = open_webui(f"{server.url}/v1", key="")
    assert "tts-1" in seen["models"] and seen["voices"]["af_heart"] == "Heart"
    assert seen["speech"].status_code == 200 and seen["speech"].headers["content-type"] == "audio/mpeg"
    assert spoken_seconds(seen["speech"].content) > 0.8
    r = sillytavern(f"{server.url}/v1/audio/speech", key=None)
    assert r.status_code == 200 and spoken_seconds(r.content) > 0.8


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("keyed"), KOKORO_API_KEYS=KEY, KOKORO_WORKERS="1") as s:
        yield s


def test_open_webui_and_sillytavern_with_a_key(keyed_server):
    base = f"{keyed_server.url}/v1"
    seen = open_webui(base, key=KEY)  # the lists without a key (as Open WebUI asks), speech with it
    assert "gpt-4o-mini-tts" in seen["models"] and "bm_george" in seen["voices"]
    assert seen["speech"].status_code == 200 and spoken_seconds(seen["speech"].content) > 0.8
    r = sillytavern(f"{base}/audio/speech", key=KEY, voice="nova")
    assert r.status_code == 200 and spoken_seconds(r.content) > 0.8
    # a missing or wrong key: the message Open WebUI shows is in error.message
    for key in (None, "wrong"):
        r = sillytavern(f"{base}/audio/speech", key=key)
        err = assert_error(r, 401, "Unauthorized")
        assert "key" in err["openai"]["message"]


def test_open_webui_shows_the_reason_of_a_bad_request(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", json={"input": "Hi", "voice": "no_such_voice", "model": "tts-1"})
    detail = f"External: {r.json()['error'].get('message', '')}"  # Open WebUI's own line
    assert "Unknown voice 'no_such_voice'" in detail


# ------------------------------------------------------------------ Kokoro-FastAPI's extra fields


KFA_BODY = {
    "model": "kokoro", "input": "Kokoro FastAPI sends extra fields.", "voice": "af_heart", "response_format": "wav",
    "download_format": "mp3", "speed": 1.0, "stream": False, "return_download_link": False, "lang_code": "a",
    "volume_multiplier": 1.0, "user": "someone",
    "normalization_options": {"normalize": True, "unit_normalization": True, "url_normalization": True,
                              "email_normalization": True, "optional_pluralization_normalization": True,
                              "phone_normalization": True, "replace_remaining_symbols": True},
}


def test_kokoro_fastapi_request_is_accepted_and_says_what_it_ignored(client):
    r = client.post("/v1/audio/speech", json=KFA_BODY)
    assert r.status_code == 200, r.text
    assert r.headers["x-ignored-fields"] == "download_format, user, normalization_options.unit_normalization"
    assert spoken_seconds(r.content) > 1.0


def test_volume_multiplier_scales_the_audio(client):
    body = {**KFA_BODY, "response_format": "pcm"}
    plain = np.frombuffer(client.post("/v1/audio/speech", json=body).content, "<i2").astype(np.float64)
    half = np.frombuffer(client.post("/v1/audio/speech", json={**body, "volume_multiplier": 0.5}).content, "<i2")
    assert len(half) == len(plain)
    ratio = rms(half.astype(np.float64)) / rms(plain)
    assert 0.48 < ratio < 0.52, ratio
    assert_error(client.post("/v1/audio/speech", json={**body, "volume_multiplier": 50}), 400, "ValidationError")


def test_lang_code_is_honoured(client):
    body = {**KFA_BODY, "input": "Tomato, schedule, water.", "voice": "af_heart", "response_format": "pcm"}
    us = client.post("/v1/audio/speech", json={**body, "lang_code": "a"})
    gb = client.post("/v1/audio/speech", json={**body, "lang_code": "b"})
    default = client.post("/v1/audio/speech", json={**body, "lang_code": None})
    assert us.status_code == gb.status_code == 200
    assert us.content == default.content and gb.content != us.content  # British G2P for 'b'
    err = assert_error(client.post("/v1/audio/speech", json={**body, "lang_code": "j"}), 400, "UnsupportedLanguage")
    assert err["openai"]["param"] == "lang_code"


def test_normalization_options_normalize_false_maps_onto_normalize():
    from kokoro_api.schemas import SpeechRequest

    assert SpeechRequest(input="x").normalize is True
    assert SpeechRequest(input="x", normalization_options={"normalize": False}).normalize is False
    assert SpeechRequest(input="x", normalize=False).normalize is False


def test_kokoro_fastapi_health_and_audio_models(client):
    assert client.get("/health").json() == {"status": "healthy"}
    assert {m["id"] for m in client.get("/v1/audio/models").json()["models"]} >= {"tts-1", "kokoro"}
