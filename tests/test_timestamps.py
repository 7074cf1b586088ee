"""POST /v1/audio/speech/timestamps: one entry per word as written, monotonic, ending with the audio."""

from __future__ import annotations

import base64

import pytest

from helpers import decode

TRICKY = "Dr. Smith's 2 cats, Tom & Jerry, don't like the rain—or snow at 3:30pm!"
LONG = (
    "Captions need a time for every word. The service maps the model's predicted phoneme durations back "
    "to the words exactly as they were written, including punctuation like commas, and keeps going across "
    "chunk boundaries, so that the last word of a long paragraph still lines up with the end of the audio. "
    "This text is long enough to be split into more than one chunk."
)


def check(body: dict, text: str) -> None:
    words = body["words"]
    assert [w["word"] for w in words] == text.split()
    prev_end = 0.0
    for w in words:
        assert w["start"] <= w["end"], w
        assert w["start"] >= prev_end - 0.001, (w, prev_end)
        prev_end = w["end"]
    duration = body["duration"]
    assert duration - 0.5 <= words[-1]["end"] <= duration + 0.001, (words[-1], duration)
    assert words[0]["start"] < 0.5


@pytest.mark.parametrize("text", [TRICKY, LONG], ids=["tricky", "multi-chunk"])
def test_words_monotonic_as_written_and_end_with_audio(client, text):
    body = {"input": text, "voice": "af_heart", "response_format": "wav"}
    r = client.post("/v1/audio/speech/timestamps", json=body)
    assert r.status_code == 200, r.text
    body = r.json()
    samples, sr = decode(base64.b64decode(body["audio"]))
    assert abs(len(samples) / sr - body["duration"]) < 0.01
    assert body["format"] == "wav" and body["sample_rate"] == 24000
    check(body, text)


def test_british_voice_and_speed_keep_timestamps_consistent(client):
    text = "Double speed stays in step."
    r = client.post("/v1/audio/speech/timestamps",
                    json={"input": text, "voice": "bf_emma", "speed": 2.0, "response_format": "mp3"})
    assert r.status_code == 200
    check(r.json(), text)


def test_word_times_come_from_the_models_durations(client):
    """Spread evenly over phoneme tokens, every word would last exactly (its phonemes) x (one token's
    time); the model's predicted durations make that time per phoneme vary from word to word."""
    import numpy as np

    text = "Well, the extraordinarily long afternoon finally ended, and we walked home slowly."
    body = {"input": text, "voice": "af_heart", "response_format": "wav"}
    r = client.post("/v1/audio/speech/timestamps", json=body)
    assert r.status_code == 200, r.text
    words = r.json()["words"]
    synthesizer = client.app.state.runtime.synthesizer
    chunks = list(synthesizer._chunks(text, False, False))
    assert len(chunks) == 1
    spoken = [w for w in chunks[0].words if w.text]
    assert [w.text for w in spoken] == [w["word"] for w in words]
    per_phoneme = np.array(
        [(t["end"] - t["start"]) / len(w.phonemes) for t, w in zip(words, spoken, strict=True)]
    )
    spread = per_phoneme.std() / per_phoneme.mean()
    assert spread > 0.15, (spread, per_phoneme.round(3).tolist())
