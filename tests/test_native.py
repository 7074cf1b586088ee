"""POST /synthesize and /synthesize/batch (deployment-plan shape), and misaki's inline pronunciation."""

from __future__ import annotations

import base64

import pytest

from helpers import assert_error, decode

TEXT = "Native endpoint."


def synth(client, **body):
    return client.post("/synthesize", json={"text": TEXT, **body})


@pytest.mark.parametrize("fmt,media,mark", [("mp3", "audio/mpeg", None), ("wav", "audio/wav", b"RIFF"),
                                            ("ogg", "audio/ogg", b"OpusHead")])
def test_synthesize_formats(client, fmt, media, mark):
    r = synth(client, voice_id="af_heart", output_format=fmt, language="en-us", speaking_rate=1.2)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media
    if mark:
        assert r.content.count(mark) == 1
    samples, sr = decode(r.content)
    assert sr == 24000 and 0.5 < len(samples) / sr < 4


def test_synthesize_defaults_are_mp3_and_default_voice(client, settings):
    r = synth(client)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    assert r.content == synth(client, voice_id=settings.default_voice, output_format="mp3").content


def test_british_language_and_voice(client):
    assert synth(client, voice_id="bf_emma", language="en-GB", output_format="wav").status_code == 200


BAD = [
    ({"language": "fr"}, "UnsupportedLanguage"),
    ({"language": "de-de"}, "UnsupportedLanguage"),
    ({"language": "en-us", "voice_id": "bf_emma"}, "InvalidVoice"),  # accent contradicts the language
    ({"language": "en-gb", "voice_id": "af_heart"}, "InvalidVoice"),
    ({"voice_id": "nobody"}, "InvalidVoice"),
    ({"voice_id": "af_bella(0)"}, "InvalidVoice"),
    ({"speaking_rate": 0.49}, "ValidationError"),
    ({"speaking_rate": 2.01}, "ValidationError"),
    ({"output_format": "aac"}, "ValidationError"),
    ({"text": "  "}, "InvalidRequest"),
    ({"text": "x " * 600}, "InputTooLong"),
    ({"voice": "af_heart"}, "ValidationError"),  # unknown field
]


@pytest.mark.parametrize("body,error", BAD, ids=[f"{e}{i}" for i, (_, e) in enumerate(BAD)])
def test_synthesize_errors(client, body, error):
    err = assert_error(synth(client, **body), 400, error)
    if error == "UnsupportedLanguage":
        assert body["language"] in err["message"] and "en-gb" in err["message"]


def test_batch_json_and_concatenated(client):
    items = [{"text": "First item.", "voice_id": "af_heart", "output_format": "wav"},
             {"text": "Second item.", "voice_id": "bm_george", "language": "en-gb", "output_format": "wav"}]
    r = client.post("/synthesize/batch", json={"items": items, "concatenate": False})
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out, list) and [o["index"] for o in out] == [0, 1]
    assert out[1]["voice_id"] == "bm_george" and out[1]["language"] == "en-gb"
    total = 0.0
    for o in out:
        samples, sr = decode(base64.b64decode(o["audio"]))
        assert abs(len(samples) / sr - o["duration"]) < 0.01 and o["media_type"] == "audio/wav"
        total += o["duration"]
    joined = client.post("/synthesize/batch", json={"items": items, "concatenate": True})
    assert joined.status_code == 200 and joined.headers["content-type"] == "audio/wav"
    samples, sr = decode(joined.content)
    assert abs(len(samples) / sr - total) < 0.01


def test_batch_validates_every_item_before_synthesizing(client, monkeypatch):
    synth_ = client.app.state.runtime.synthesizer
    calls = []
    original = synth_.synthesize

    async def counting(*a, **k):
        calls.append(a)
        return await original(*a, **k)

    monkeypatch.setattr(synth_, "synthesize", counting)
    items = [
        {"text": "Fine."},
        {"text": "Too fast.", "speaking_rate": 3},
        {"text": "Bonjour.", "language": "fr"},
        {"text": "Who?", "voice_id": "af_nobody"},
        {"text": ""},
        {"text": "Fine too."},
        "not an object",
    ]
    err = assert_error(client.post("/synthesize/batch", json={"items": items}), 400, "InvalidRequest")
    bad = {b["index"]: b for b in err["details"]["items"]}
    assert sorted(bad) == [1, 2, 3, 4, 6]
    assert bad[1]["field"] == "speaking_rate"
    assert bad[2]["error"] == "UnsupportedLanguage"
    assert bad[3]["error"] == "InvalidVoice" and "af_nobody" in bad[3]["message"]
    assert bad[4]["error"] == "InvalidRequest"
    assert calls == []  # nothing synthesized


def test_batch_limits(client, settings):
    assert_error(client.post("/synthesize/batch", json={"items": []}), 400, "InvalidRequest")
    many = [{"text": "Hi."}] * (settings.max_batch_items + 1)
    err = assert_error(client.post("/synthesize/batch", json={"items": many}), 400, "InvalidRequest")
    assert str(settings.max_batch_items) in err["message"]
    n = settings.max_batch_chars // 900 + 1
    big = [{"text": "word " * 180}] * n
    assert_error(client.post("/synthesize/batch", json={"items": big}), 400, "InputTooLong")
    mixed = [{"text": "A.", "output_format": "wav"}, {"text": "B.", "output_format": "mp3"}]
    err = assert_error(client.post("/synthesize/batch", json={"items": mixed, "concatenate": True}), 400)
    assert err["details"]["items"][0]["index"] == 1


def test_inline_pronunciation(client):
    """misaki's [word](/phonemes/) markup: the given phonemes are spoken, the word keeps its spelling."""
    phonemizer = client.app.state.runtime.synthesizer.phonemizer
    assert phonemizer.phonemes("[Kokoro](/kˈOkəɹO/)") == "kˈOkəɹO"
    a = synth(client, text="Say [Kokoro](/kˈOkəɹO/) now.", output_format="wav").content
    b = synth(client, text="Say [Kokoro](/bənˈænə/) now.", output_format="wav").content
    assert a != b
    r = client.post("/v1/audio/speech/timestamps", json={"input": "Say [Kokoro](/kˈOkəɹO/) now."})
    assert [w["word"] for w in r.json()["words"]] == ["Say", "Kokoro", "now."]
