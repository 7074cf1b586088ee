"""Voice mixing: 'af_bella(2)+af_sky(1)' is a normalized weighted average, accepted wherever a voice is."""

from __future__ import annotations

import base64

import pytest

from helpers import assert_error

TEXT = "Mixing voices."
MIX = "af_bella(2)+af_sky(1)"


def pcm(client, voice: str) -> bytes:
    body = {"input": TEXT, "voice": voice, "response_format": "pcm", "stream": False}
    r = client.post("/v1/audio/speech", json=body)
    assert r.status_code == 200, r.text
    return r.content


def test_mix_is_deterministic_normalized_and_differs_from_its_voices(client):
    mixed = pcm(client, MIX)
    assert pcm(client, MIX) == mixed
    assert pcm(client, "af_bella(4)+af_sky(2)") == mixed  # weights are normalized
    assert pcm(client, "af_bella") != mixed
    assert pcm(client, "af_sky") != mixed
    assert pcm(client, "af_bella(1)+af_sky") != mixed  # a bare name weighs 1


BAD_MIXES = [
    ("af_bella(2", "af_bella(2"),  # unbalanced
    ("af_bella(2)+", "''"),  # empty term
    ("af_bella(two)", "two"),
    ("af_bella(0)", "af_bella"),
    ("af_bella(-1)+af_sky", "af_bella"),
    ("af_bella+af_nobody(1)", "af_nobody"),
    ("af_bella;rm -rf", "af_bella;rm -rf"),
]


@pytest.mark.parametrize("voice,named", BAD_MIXES)
def test_bad_mix_is_400_naming_the_problem(client, voice, named):
    r = client.post("/v1/audio/speech", json={"input": TEXT, "voice": voice})
    err = assert_error(r, 400, "InvalidVoice")
    assert named in err["message"], err


ENDPOINTS = [
    ("/v1/audio/speech", lambda v: {"input": TEXT, "voice": v, "response_format": "pcm"}),
    ("/v1/audio/speech", lambda v: {"input": TEXT, "voice": v, "response_format": "pcm", "stream": True}),
    ("/v1/audio/speech", lambda v: {"input": TEXT, "voice": v, "response_format": "pcm",
                                    "stream_format": "sse"}),
    ("/v1/audio/speech/timestamps", lambda v: {"input": TEXT, "voice": v, "response_format": "pcm"}),
    ("/synthesize", lambda v: {"text": TEXT, "voice_id": v, "output_format": "wav"}),
    ("/synthesize/batch", lambda v: {"items": [{"text": TEXT, "voice_id": v, "output_format": "wav"}]}),
]


@pytest.mark.parametrize("path,body", ENDPOINTS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(ENDPOINTS)])
def test_mixing_works_on_every_endpoint(client, path, body):
    r = client.post(path, json=body(MIX))
    assert r.status_code == 200, r.text
    if path == "/v1/audio/speech/timestamps":
        assert base64.b64decode(r.json()["audio"]) == pcm(client, MIX)
    bad = client.post(path, json=body("af_bella(0)+af_sky"))
    assert bad.status_code == 400
    assert "af_bella" in bad.text


def test_mix_in_saved_voice_is_validated(client):
    r = client.post("/v1/audio/voices", json={"name": "badmix", "mix": "af_bella(0)"})
    assert_error(r, 400, "InvalidVoice")
