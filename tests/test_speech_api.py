"""/v1/audio/speech on the real model: every format decodes to plausible, non-silent 24 kHz mono audio."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_error, decode, rms

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs back into the quiet green forest."
WORDS_PER_SECOND = 2.5  # Kokoro at speed 1.0, measured on plain prose (about 150 words a minute)
RMS_FLOOR = 0.01


def estimate(text: str, speed: float = 1.0) -> float:
    return len(text.split()) / WORDS_PER_SECOND / speed


def speech(client, **body):
    """A non-streamed request (stream: false), unless the body says otherwise."""
    return client.post("/v1/audio/speech", json={"model": "kokoro", "voice": "af_heart", "stream": False, **body})


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_format_decodes(client, fmt):
    r = speech(client, input=TEXT, response_format=fmt)
    assert r.status_code == 200, r.text
    assert r.headers["content-length"] == str(len(r.content))
    expected_type = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                     "wav": "audio/wav", "pcm": "audio/pcm"}[fmt]
    assert r.headers["content-type"] == expected_type
    if fmt == "pcm":
        samples, sr = np.frombuffer(r.content, dtype="<i2").astype(np.float32) / 32768, 24000
    else:
        samples, sr = decode(r.content)
    assert sr == 24000
    assert samples.ndim == 1
    seconds = len(samples) / sr
    assert abs(seconds - estimate(TEXT)) <= 0.35 * estimate(TEXT), seconds
    assert rms(samples) > RMS_FLOOR


def test_speed_two_halves_duration(client):
    slow = decode(speech(client, input=TEXT, response_format="wav", speed=1.0).content)[0]
    fast = decode(speech(client, input=TEXT, response_format="wav", speed=2.0).content)[0]
    assert 0.4 <= len(fast) / len(slow) <= 0.62


def test_long_input_is_spoken_whole(client):
    """A 3,000-character input (streamed: longer than the non-streamed cap) is spoken to the end."""
    sentence = "Every sentence in this long passage is spoken, and none of them may go missing. "
    text = (sentence * 40)[:3000].rsplit(" ", 1)[0] + "."
    assert len(text) >= 2900
    r = speech(client, input=text, response_format="wav", stream=True)
    assert r.status_code == 200
    seconds = len(decode(r.content)[0]) / 24000
    one = len(decode(speech(client, input=sentence, response_format="wav").content)[0]) / 24000
    ratio = seconds / (one * len(text) / len(sentence))
    assert 0.8 <= ratio <= 1.25, (seconds, one)


def test_default_is_streamed_and_stream_false_has_length(client):
    streamed = client.post("/v1/audio/speech", json={"input": "Hello there.", "response_format": "pcm"})
    whole = speech(client, input="Hello there.", response_format="pcm")
    assert "content-length" not in streamed.headers  # a StreamingResponse (chunked over HTTP/1.1)
    assert whole.headers["content-length"] == str(len(whole.content))
    assert streamed.content == whole.content


def test_instructions_are_accepted_and_ignored(client):
    a = speech(client, input="Hello there.", response_format="pcm")
    b = speech(client, input="Hello there.", response_format="pcm", instructions="whisper sadly")
    assert a.status_code == b.status_code == 200
    assert a.content == b.content


@pytest.mark.parametrize("model", ["kokoro", "tts-1", "tts-1-hd"])
def test_model_aliases(client, model):
    r = client.post("/v1/audio/speech", json={"model": model, "input": "Hi.", "response_format": "pcm"})
    assert r.status_code == 200


BAD = [
    ({"input": ""}, "InvalidRequest"),
    ({"input": "   \n\t "}, "InvalidRequest"),
    ({"input": "x" * 4097}, "InputTooLong"),
    ({"input": "x " * 600, "stream": False}, "InputTooLong"),  # over the non-streamed cap
    ({"input": "Hi", "voice": "nobody"}, "InvalidVoice"),
    ({"input": "Hi", "voice": "../../etc/passwd"}, "InvalidVoice"),
    ({"input": "Hi", "model": "whisper-1"}, "ValidationError"),
    ({"input": "Hi", "response_format": "ogg-vorbis"}, "ValidationError"),
    ({"input": "Hi", "speed": 0.1}, "ValidationError"),
    ({"input": "Hi", "speed": 5}, "ValidationError"),
    ({"input": "Hi", "speed": "fast"}, "ValidationError"),
    ({"input": 42}, "ValidationError"),
    ({"voice": "af_heart"}, "ValidationError"),
    ({"input": "Hi", "unknown_field": 1}, "ValidationError"),
]


@pytest.mark.parametrize("body,error", BAD, ids=[e + str(i) for i, (_, e) in enumerate(BAD)])
def test_validation_errors_are_400_in_error_shape(client, body, error):
    body = {"model": "kokoro", **body}
    r = client.post("/v1/audio/speech", json=body)
    err = assert_error(r, 400, error)
    if error == "InvalidVoice":
        assert "/v1/audio/voices" in err["message"]


def test_invalid_json_is_400(client):
    r = client.post("/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(r, 400, "ValidationError")


def test_unknown_route_is_404_and_body_limit_413(client, settings):
    assert_error(client.get("/v1/nothing-here"), 404, "NotFound")
    big = b'{"input": "' + b"a" * (settings.max_body_bytes + 10) + b'"}'
    assert_error(client.post("/v1/audio/speech", content=big, headers={"content-type": "application/json"}), 413)


@pytest.mark.parametrize("path", ["/v1/audio/speech", "/synthesize", "/synthesize/batch", "/v1/audio/voices"])
def test_chunked_body_over_limit_is_413(client, settings, path):
    """No Content-Length (chunked): the limit is enforced as the body streams in, still a 413, not a 400."""
    chunk = b"a" * 65536
    n = settings.max_body_bytes // len(chunk) + 2

    def body():
        yield b'{"input": "'
        for _ in range(n):
            yield chunk
        yield b'"}'

    r = client.post(path, content=body(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    err = assert_error(r, 413, "PayloadTooLarge")
    assert str(settings.max_body_bytes) in err["message"]


def test_voices_and_models(client):
    voices = client.get("/v1/audio/voices").json()["voices"]
    ids = {v["id"] for v in voices}
    assert {"af_heart", "bm_george"} <= ids
    heart = next(v for v in voices if v["id"] == "af_heart")
    assert heart == {"id": "af_heart", "name": "Heart", "language": "en-us", "gender": "female"}
    assert next(v for v in voices if v["id"] == "bm_george")["language"] == "en-gb"
    models = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert models == {"kokoro", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"}


def test_probes_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/v1/audio/speech" in client.get("/openapi.json").json()["paths"]
