"""Jobs (``Prefer: respond-async``) on one instance, the job queue's bounds and shutdown, and the peer
client's parsing and failure handling. Behind two replicas: tests/test_replicas.py."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from helpers import assert_error, decode, free_port, rms

ASYNC = {"Prefer": "respond-async"}


def _wait(client, url: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(url)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("succeeded", "failed"):
            assert "Retry-After" not in r.headers
            return r.json()
        assert r.headers["Retry-After"] == "2"
        assert time.monotonic() < deadline, r.json()
        time.sleep(0.5)


def test_synthesize_job_end_to_end(client) -> None:
    text = "A short text, sent as a job. It still gets word timestamps."
    r = client.post("/synthesize", json={"text": text, "output_format": "ogg", "speaking_rate": 1.2},
                    headers={"Prefer": "wait=5, respond-async"})
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == r.json()["status_url"] and r.headers["Location"].startswith("/v1/jobs/")
    job = _wait(client, r.headers["Location"])
    assert job["status"] == "succeeded" and job["error"] is None, job
    assert job["started_at"] >= job["created_at"] and job["finished_at"] >= job["started_at"]
    res = job["result"]
    assert res["format"] == "ogg" and res["media_type"] == "audio/ogg" and res["voice_id"] == "af_heart"
    assert [w["word"] for w in res["words"]] == text.split()
    d = client.get(res["download_url"])
    assert d.status_code == 200 and d.headers["content-type"] == "audio/ogg"
    assert len(d.content) == res["bytes"]
    audio, sr = decode(d.content)
    assert len(audio) / sr == pytest.approx(res["duration"], abs=0.1) and rms(audio) > 0.01


def test_prefer_without_respond_async_is_an_ordinary_request(client) -> None:
    r = client.post("/synthesize", json={"text": "Hello there."}, headers={"Prefer": "return=minimal"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/synthesize", {"text": "Hi.", "voice_id": "af_nobody"}, "InvalidVoice"),
        ("/synthesize", {"text": "Hi.", "language": "fr"}, "UnsupportedLanguage"),
        ("/synthesize", {"text": "x" * 5000}, "InputTooLong"),
        ("/synthesize", {"text": "   "}, "InvalidRequest"),
        ("/synthesize/batch", {"items": [{"text": "Fine."}, {"text": "Bad.", "voice_id": "zz"}]},
         "InvalidRequest"),
        ("/v1/audio/speech/timestamps", {"input": "Hi.", "voice": "af_nobody"}, "InvalidVoice"),
    ],
)
def test_a_bad_job_is_refused_before_it_is_accepted(client, path, body, error) -> None:
    assert_error(client.post(path, json=body, headers=ASYNC), 400, error)


def test_batch_job_items_each_downloadable(client) -> None:
    items = [{"text": "First item.", "output_format": "wav"},
             {"text": "Second item.", "voice_id": "bm_george"}]
    r = client.post("/synthesize/batch", json={"items": items}, headers=ASYNC)
    assert r.status_code == 202, r.text
    job = _wait(client, r.headers["Location"])
    assert job["status"] == "succeeded" and job["kind"] == "batch", job
    out = job["result"]["items"]
    assert [i["output_format"] for i in out] == ["wav", "mp3"] and out[1]["voice_id"] == "bm_george"
    for item in out:
        assert "audio" not in item
        d = client.get(item["download_url"])
        assert d.status_code == 200 and len(d.content) == item["bytes"]
        assert [w["word"] for w in item["words"]] == items[item["index"]]["text"].split()


def test_unknown_job_is_404(client) -> None:
    assert_error(client.get("/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA"), 404, "NotFound")
    assert_error(client.get("/v1/jobs/..%2Fetc"), 404, "NotFound")


def test_limits_report_the_job_cap(client, settings) -> None:
    assert client.get("/v1/limits").json()["max_job_chars"] == settings.max_job_chars


# --- the queue itself (real JobQueue, plain coroutines as work)


def test_queue_bounds_runs_in_order_and_stops() -> None:
    from kokoro_api.errors import InvalidRequest, Overloaded
    from kokoro_api.jobs import JobQueue

    async def scenario() -> None:
        q = JobQueue(max_jobs=4, max_age_s=60)
        q.start()
        gate = asyncio.Event()
        order = []

        async def work(job):  # noqa: ANN001, ANN202
            order.append(job.id)
            await gate.wait()
            return {"ok": True}

        a = q.submit("synthesize", 10, work)
        b = q.submit("synthesize", 10, work)
        q.max_jobs = 2
        with pytest.raises(Overloaded) as exc:
            q.submit("synthesize", 10, work)
        assert exc.value.headers["Retry-After"] and exc.value.details["max_jobs"] == 2
        q.max_jobs = 4
        await asyncio.sleep(0.05)
        assert (a.status, b.status) == ("running", "queued") and order == [a.id]
        gate.set()
        for _ in range(100):
            if b.done:
                break
            await asyncio.sleep(0.01)
        assert (a.status, b.status) == ("succeeded", "succeeded") and order == [a.id, b.id]
        assert q.get(a.id) is a and q.get("not-an-id") is None

        async def refuse(job):  # noqa: ANN001, ANN202
            raise InvalidRequest("The input has nothing that can be spoken.", {"field": "text"})

        async def crash(job):  # noqa: ANN001, ANN202
            raise RuntimeError("boom")

        e, f = q.submit("synthesize", 3, refuse), q.submit("synthesize", 3, crash)
        for _ in range(100):
            if f.done:
                break
            await asyncio.sleep(0.01)
        assert e.status == "failed" and e.result is None
        assert e.error == {"error": "InvalidRequest", "message": "The input has nothing that can be spoken.",
                           "details": {"field": "text"}}
        assert f.status == "failed" and f.error["error"] == "InternalError"
        assert "boom" not in f.error["message"]
        q.expire(now=time.time() + 61)
        assert q.get(a.id) is None and q.pending == 0
        # stop: the running job is cancelled, the queued one marked failed, new ones refused
        gate.clear()
        c = q.submit("synthesize", 10, work)
        d = q.submit("synthesize", 10, work)
        await asyncio.sleep(0.05)
        q.stop()
        await asyncio.sleep(0.05)
        assert c.status == d.status == "failed"
        assert c.error["error"] == d.error["error"] == "Cancelled"
        with pytest.raises(Overloaded):
            q.submit("synthesize", 10, work)

    asyncio.run(scenario())


# --- the peer client


def test_peers_setting_is_checked() -> None:
    from kokoro_api.config import Settings
    from kokoro_api.peers import parse_targets

    assert parse_targets(" a:1, http://b:8880/ ,[::1]:9") == [("a", 1), ("b", 8880), ("::1", 9)]
    for bad in ("nohost", "a:0", "a:http", ":80"):
        with pytest.raises(ValidationError, match="host:port"):
            Settings(peers=bad)


def test_peer_lookup_of_unreachable_peers_is_none_not_an_error() -> None:
    from kokoro_api.peers import Peers

    async def scenario() -> None:
        peers = Peers(f"127.0.0.1:{free_port()},no-such-host.invalid:80", timeout_s=2)
        try:
            assert await peers.find("/v1/download/AAAAAAAAAAAAAAAAAAAAAA.mp3") is None
            sent = await peers.send_all("DELETE", "/v1/audio/voices/x")
            assert list(sent.values()) == ["ConnectError"]
        finally:
            await peers.aclose()

    asyncio.run(scenario())

