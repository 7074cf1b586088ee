"""Streaming on /v1/audio/speech: chunked audio in every format, SSE, time to first audio, disconnects."""

from __future__ import annotations

import base64
import json
import time

import httpx
import numpy as np
import pytest

from helpers import decode, live_server

TEXT = ("Streaming sends the first words early, and the rest follows as soon as it is ready. "
        "Every format has to decode as one single file.")
HEADER_MARKS = {"wav": b"RIFF", "flac": b"fLaC", "opus": b"OpusHead", "mp3": b"ID3"}


def speech(client, **body):
    body = {"model": "kokoro", "voice": "af_heart", "input": TEXT, **body}
    return client.post("/v1/audio/speech", json=body)


def pcm_samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def whole_seconds(client) -> float:
    r = speech(client, response_format="pcm", stream=False)
    assert r.status_code == 200 and r.headers["content-length"] == str(len(r.content))
    return len(r.content) / 2 / 24000


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_streamed_body_is_one_whole_file(client, whole_seconds, fmt):
    r = speech(client, response_format=fmt, stream_format="audio")
    assert r.status_code == 200, r.text
    assert "content-length" not in r.headers  # chunked
    if fmt == "pcm":
        samples, sr = pcm_samples(r.content), 24000
    else:
        samples, sr = decode(r.content)
    if fmt in HEADER_MARKS:  # one header, not one per chunk (mp3's ID3 tag is optional)
        assert r.content.count(HEADER_MARKS[fmt]) in ((0, 1) if fmt == "mp3" else (1,))
    assert sr == 24000
    seconds = len(samples) / sr
    assert abs(seconds - whole_seconds) <= 0.05 * whole_seconds, (seconds, whole_seconds)


def test_kokoro_fastapi_stream_flag_and_default(client, whole_seconds):
    """Kokoro-FastAPI's `stream: true`, and no flag at all (OpenAI's default 'audio'), stream."""
    for flags in ({"stream": True}, {}):
        r = speech(client, response_format="wav", **flags)
        assert r.status_code == 200
        assert "content-length" not in r.headers
        samples, _ = decode(r.content)
        assert abs(len(samples) / 24000 - whole_seconds) <= 0.05 * whole_seconds


def sse_events(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block[:80]
            events.append(json.loads(block[len("data: "):]))
    return events


def test_sse_deltas_concatenate_to_the_audio_without_clicks(client, whole_seconds):
    r = speech(client, response_format="pcm", stream_format="sse")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert events[-1]["type"] == "speech.audio.done" and len(deltas) == len(events) - 1
    assert len(deltas) >= 2  # the short first chunk, then the rest
    parts = [base64.b64decode(e["audio"]) for e in deltas]
    joined = b"".join(parts)
    assert joined == speech(client, response_format="pcm", stream_format="audio").content
    assert abs(len(joined) / 2 / 24000 - whole_seconds) <= 0.05 * whole_seconds
    assert events[-1]["usage"]["output_tokens"] == len(joined)
    # For pcm each delta is one synthesized chunk, sent as it is joined to the previous one (the joiner holds
    # back a few ms of speech for the cross-fade, so a delta may end mid-word): the audio starts and ends
    # at silence, and at no delta boundary does it jump more than it does anywhere within speech (no click).
    audio = pcm_samples(joined)
    assert abs(audio[0]) < 0.003 and abs(audio[-1]) < 0.003
    steps = np.abs(np.diff(audio))
    bound = np.percentile(steps, 99.9)
    for end in np.cumsum([len(p) // 2 for p in parts])[:-1]:
        assert steps[end - 1] <= bound, (end, steps[end - 1], bound)


def test_sse_mp3_deltas_decode_as_one_file(client, whole_seconds):
    r = speech(client, response_format="mp3", stream_format="sse")
    deltas = [e for e in sse_events(r.text) if e["type"] == "speech.audio.delta"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    samples, _ = decode(audio)
    assert abs(len(samples) / 24000 - whole_seconds) <= 0.05 * whole_seconds


PARAGRAPH = (
    "A person waiting for a paragraph should hear the first words within a second, not after the whole "
    "text is synthesized. So the first chunk is short, just the first clause or a few words, and later "
    "chunks are longer for throughput. This paragraph is long enough to need several chunks of speech, "
    "which makes the difference between the first bytes and the whole file easy to see."
)


def test_first_bytes_arrive_well_before_the_whole_synthesis(server):
    body = {"model": "kokoro", "voice": "af_heart", "input": PARAGRAPH, "response_format": "pcm"}
    with httpx.Client(base_url=server.url, timeout=120) as http:
        http.post("/v1/audio/speech", json={**body, "input": "Warm up."})
        t0 = time.perf_counter()
        whole = http.post("/v1/audio/speech", json={**body, "stream": False})
        t_whole = time.perf_counter() - t0
        assert whole.status_code == 200
        t0 = time.perf_counter()
        with http.stream("POST", "/v1/audio/speech", json={**body, "stream_format": "audio"}) as r:
            assert r.status_code == 200
            chunks = r.iter_raw()
            first = next(chunks)
            t_first = time.perf_counter() - t0
            rest = b"".join(chunks)
    assert first
    assert t_first < 0.5 * t_whole, (t_first, t_whole)
    assert abs(len(first + rest) - len(whole.content)) <= 0.05 * len(whole.content)


def test_openai_client_with_streaming_response(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="af_heart", input="The official client streams this.", response_format="mp3"
    ) as response:
        assert response.status_code == 200
        data = b"".join(response.iter_bytes())
    samples, sr = decode(data)
    assert sr == 24000 and len(samples) / sr > 1.0


def test_disconnect_mid_stream_frees_the_worker(tmp_path):
    """One worker: abort a long stream after its first bytes; the next request must not wait for it."""
    short = {"model": "kokoro", "voice": "af_heart", "input": "Is the worker free?", "response_format": "pcm"}
    sentence = "This long text would keep the only worker busy for a long time if nobody stopped it. "
    long_text = (sentence * 40)[:3000]
    with live_server(tmp_path, KOKORO_WORKERS="1", KOKORO_MAX_QUEUE="2", KOKORO_WARMUP="false") as srv:
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            http.post("/v1/audio/speech", json=short)  # warm up
            t0 = time.perf_counter()
            assert http.post("/v1/audio/speech", json=short).status_code == 200
            t_short = time.perf_counter() - t0
        with httpx.Client(base_url=srv.url, timeout=120) as aborted:
            with aborted.stream("POST", "/v1/audio/speech",
                                json={**short, "input": long_text, "stream_format": "audio"}) as r:
                assert r.status_code == 200
                next(r.iter_raw())
        # the client and its connection are gone now, mid-synthesis
        t_long_estimate = t_short * len(long_text) / len(short["input"])
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            t0 = time.perf_counter()
            r = http.post("/v1/audio/speech", json=short)
            t_next = time.perf_counter() - t0
        assert r.status_code == 200, r.text
        assert t_next < max(5 * t_short, 3.0), (t_next, t_short)  # slack for a loaded CI machine
        assert t_next < 0.1 * t_long_estimate, (t_next, t_long_estimate)


def test_stream_ramps_up_only_when_nobody_waits(client):
    """An uncontended stream starts with a short chunk; one admitted while others queue uses full-size
    chunks (its first audio is late anyway, and short chunks cost more per audio second)."""
    import asyncio

    from kokoro_api.admission import Admission, Lease
    from kokoro_api.api.respond import SynthesisJob, _stream_bytes

    job = SynthesisJob(client.app.state.runtime, TEXT, "af_heart", 1.0, "pcm", True)

    async def pieces(ramp: bool) -> list[int]:
        admission = Admission(slots=1, max_queue=0, max_wait_s=1)
        lease = await admission.acquire()
        assert isinstance(lease, Lease)
        return [len(b) async for b in _stream_bytes(job, lease, ramp=ramp)]

    ramped, flat = asyncio.run(pieces(True)), asyncio.run(pieces(False))
    assert len(ramped) > len(flat) >= 1, (ramped, flat)
    assert ramped[0] < flat[0] / 3  # the first piece is a few words, not the first sentence
    # same speech either way (joins trim a little edge silence differently)
    assert abs(sum(ramped) - sum(flat)) / sum(flat) < 0.08
