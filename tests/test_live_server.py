"""A real `kokoro-api serve` process: readiness turns on after warm-up; the official OpenAI client works."""

from __future__ import annotations

import time

import httpx

from helpers import decode, live_server, rms


def test_readyz_503_until_warm_then_200(tmp_path):
    with live_server(tmp_path, wait_ready=False) as s:
        seen = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{s.url}/readyz", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            seen.append(r.status_code)
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.json()["error"] == "NotReady"
            assert httpx.get(f"{s.url}/healthz").status_code == 200  # alive while loading
            time.sleep(0.1)
        assert seen[0] == 503 and seen[-1] == 200, seen
        # a speech request before readiness would have been 503 too; after it, it is served
        r = httpx.post(f"{s.url}/v1/audio/speech", json={"input": "Ready now.", "response_format": "wav"}, timeout=60)
        assert r.status_code == 200


def test_official_openai_client(server, tmp_path):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0)
    out = tmp_path / "speech.mp3"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="af_heart", input="Hello from the official OpenAI client.", response_format="mp3"
    ) as response:
        response.stream_to_file(out)
    samples, sr = decode(out.read_bytes())
    assert sr == 24000 and len(samples) / sr > 1.0 and rms(samples) > 0.01
    plain = client.audio.speech.create(model="kokoro", voice="bm_george", input="Plain create works too.",
                                       response_format="wav")
    samples, sr = decode(plain.content)
    assert len(samples) / sr > 1.0
