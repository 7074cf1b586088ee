"""Two replicas behave as one service: two real ``kokoro-api serve`` processes (one prepared model cache,
separate download directories as two pods' emptyDirs, saved mixes in memory) behind a round-robin proxy
that, like a Service without affinity, sends each request to the other process than the last, and gives up
on a backend that has not started answering in 30 s (the mesh's perTryTimeout).

Every request here goes through the proxy, and every one of them must work: download links, saved mixes,
and a 2,000-character /synthesize (a job: 202, status polled, audio downloaded, word timestamps).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from helpers import RoundRobinProxy, assert_error, decode, free_port, live_server, rms, wait_until_ready

PER_TRY_S = 30.0  # the mesh's perTryTimeout (kubernetes/.../virtualservice.yaml)
API_KEY = "replica-test-key"  # with API keys on (as with the cluster's Secret), the peers must pass them on
SENTENCES = (
    "The harbour was quiet in the early morning, and the fishing boats rocked gently at their moorings.",
    "A thin mist rose from the water while the gulls circled above the old stone pier.",
    "Maria walked along the quay with a basket of bread, greeting the sailors who were mending their nets.",
    "Nobody expected the storm that had been forecast for the evening to arrive before noon.",
    "By ten o'clock the wind had turned, and the sky over the lighthouse grew dark and heavy.",
    "The harbour master rang the bell twice, which meant that every boat should stay inside the breakwater.",
)


def long_text(n: int) -> str:
    """Natural English prose of exactly ``n`` characters (it may stop mid-sentence)."""
    text, i = "", 0
    while len(text) < n:
        text += (" " if text else "") + SENTENCES[i % len(SENTENCES)]
        i += 1
    text = text[:n]
    return text[:-1] + "s" if text.endswith(" ") else text


TEXT_2000 = long_text(2000)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[tuple[RoundRobinProxy, list[str]]]:
    """Two servers started together (they load in parallel), each listing both as peers, and the proxy."""
    tmp = tmp_path_factory.mktemp("replicas")
    ports = [free_port(), free_port()]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    env = {
        "KOKORO_PEERS": peers,
        "KOKORO_API_KEYS": API_KEY,
        "KOKORO_WORKERS": "2",
        "KOKORO_INTRA_OP_THREADS": "1",
        # the Deployment's mesh budget: 200 characters at most for anything answered in one piece
        "KOKORO_MAX_UNSTREAMED_CHARS": "200",
        "KOKORO_MAX_BATCH_CHARS": "200",
        "KOKORO_MAX_QUEUE_WAIT_S": "10",
    }
    with ExitStack() as stack:
        servers = []
        for i, port in enumerate(ports):
            servers.append(stack.enter_context(live_server(
                tmp, port=port, wait_ready=False, KOKORO_AUDIO_DIR=str(tmp / f"audio-{i}"), **env
            )))
        for s in servers:
            wait_until_ready(s)
        proxy = stack.enter_context(RoundRobinProxy([s.url for s in servers], per_try_timeout_s=PER_TRY_S))
        yield proxy, [s.url for s in servers]


@pytest.fixture(scope="module")
def http(replicas) -> Iterator[httpx.Client]:
    proxy, _ = replicas
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=proxy.url, timeout=PER_TRY_S + 30, headers=headers) as c:
        yield c


def _both_backends(proxy: RoundRobinProxy, responses: list[httpx.Response]) -> None:
    assert len({proxy.backend_of(r) for r in responses}) == 2, "the proxy did not spread the requests"


def test_download_links_work_whichever_pod_serves_them(replicas, http) -> None:
    proxy, backends = replicas
    made, fetched = [], []
    for i in range(3):  # three links, made alternately on each pod; each fetched twice (so once by each)
        r = http.post("/synthesize", json={"text": f"Download link number {i + 1}.", "output_format": "wav",
                                           "return_download_link": True})
        assert r.status_code == 200, r.text
        made.append(r)
        for _ in range(2):
            d = http.get(r.headers["X-Download-Path"])
            assert d.status_code == 200, (i, proxy.backend_of(r), proxy.backend_of(d), d.text)
            assert d.content == r.content, "the downloaded file is not the audio of the response"
            assert d.headers["content-type"] == "audio/wav"
            fetched.append(d)
    _both_backends(proxy, made)
    # each link was fetched both from the pod that has the file and from the one that does not
    for r, pair in zip(made, [fetched[i : i + 2] for i in range(0, 6, 2)], strict=True):
        assert {proxy.backend_of(d) for d in pair} == set(backends)
        assert proxy.backend_of(r) in {proxy.backend_of(d) for d in pair}


def test_streamed_download_link_works_on_both_pods(replicas, http) -> None:
    proxy, backends = replicas
    with http.stream("POST", "/v1/audio/speech", json={
        "input": "A streamed answer, kept for later.", "response_format": "mp3", "return_download_link": True,
    }) as r:
        assert r.status_code == 200
        streamed = r.read()
        link = r.headers["X-Download-Path"]
    gets = [http.get(link) for _ in range(2)]
    for d in gets:
        assert d.status_code == 200, d.text
        assert d.content == streamed
    assert {proxy.backend_of(d) for d in gets} == set(backends)


def test_unknown_download_is_404_on_both_pods(replicas, http) -> None:
    """Each pod asks the other, which answers from its own files only: a miss is a prompt 404, not a loop."""
    proxy, backends = replicas
    gets = [http.get("/v1/download/AAAAAAAAAAAAAAAAAAAAAA.mp3") for _ in range(2)]
    for d in gets:
        assert_error(d, 404, "NotFound")
    assert {proxy.backend_of(d) for d in gets} == set(backends)
    assert_error(http.get("/v1/download/..%2F..%2Fetc%2Fpasswd"), 404)


def test_peers_pass_the_callers_key_on_and_never_grant_access(replicas, http) -> None:
    proxy, backends = replicas
    made = http.post("/synthesize", json={"text": "Keys.", "return_download_link": True})
    assert made.status_code == 200, made.text
    link = made.headers["X-Download-Path"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Kokoro-Peer": "1"}):
        denied = [httpx.get(proxy.url + link, headers=headers) for _ in range(2)]
        assert {proxy.backend_of(r) for r in denied} == set(backends)
        for r in denied:
            assert_error(r, 401, "Unauthorized")


def test_saved_mix_is_known_to_every_pod(replicas, http, tmp_path) -> None:
    proxy, backends = replicas
    saved = http.post("/v1/audio/voices", json={"name": "replica-narrator", "mix": "af_bella(2)+am_adam(1)"})
    assert saved.status_code == 201, saved.text
    assert saved.json()["replicas"]["failed"] == 0
    try:
        lists = [http.get("/v1/audio/voices") for _ in range(2)]
        assert {proxy.backend_of(r) for r in lists} == set(backends)
        for r in lists:
            entry = {"name": "replica-narrator", "mix": "af_bella(2)+am_adam(1)", "language": "en-us"}
            assert entry in r.json()["saved"]
        body = {"text": "Spoken by a saved mix.", "output_format": "wav"}
        by_name = [http.post("/synthesize", json={**body, "voice_id": "replica-narrator"}) for _ in range(2)]
        inline = http.post("/synthesize", json={**body, "voice_id": "af_bella(2)+am_adam(1)"})
        assert {proxy.backend_of(r) for r in by_name} == set(backends)
        for r in by_name:
            assert r.status_code == 200, r.text
            audio, sr = decode(r.content)
            ref, _ = decode(inline.content)
            assert sr == 24000 and rms(audio) > 0.01
            assert abs(len(audio) - len(ref)) <= 0.05 * len(ref), "a saved mix speaks like the mix inline"
        replaced = http.post("/v1/audio/voices", json={"name": "replica-narrator", "mix": "bf_emma"})
        assert replaced.status_code == 200 and replaced.json()["created"] is False
        for r in [http.get("/v1/audio/voices") for _ in range(2)]:
            names = {v["name"]: v["mix"] for v in r.json()["saved"]}
            assert names["replica-narrator"] == "bf_emma", proxy.backend_of(r)
        # a pod that starts while the others run (a rollout's new pod) has the mix before it is ready
        # (it asks them with its own API key: no request of a client's is there to pass one on)
        with live_server(tmp_path, KOKORO_PEERS=",".join(u.removeprefix("http://") for u in backends),
                         KOKORO_AUDIO_DIR=str(tmp_path / "audio-new"), KOKORO_API_KEYS=API_KEY) as newcomer:
            listed = httpx.get(f"{newcomer.url}/v1/audio/voices", headers=http.headers).json()["saved"]
            assert {"name": "replica-narrator", "mix": "bf_emma", "language": "en-gb"} in listed
    finally:
        deleted = http.delete("/v1/audio/voices/replica-narrator")
    assert deleted.status_code == 200, deleted.text
    gone = {"text": "Gone.", "voice_id": "replica-narrator"}
    for r in [http.post("/synthesize", json=gone) for _ in range(2)]:
        assert_error(r, 400, "InvalidVoice")
    for r in [http.delete("/v1/audio/voices/replica-narrator") for _ in range(2)]:
        assert_error(r, 404, "NotFound")


def _poll(
    http: httpx.Client, proxy: RoundRobinProxy, status_url: str, deadline_s: float
) -> tuple[dict, set[str]]:
    """Poll a job's status through the proxy until it ends; every poll must answer 200."""
    seen = set()
    deadline = time.monotonic() + deadline_s
    while True:
        r = http.get(status_url)
        assert r.status_code == 200, (proxy.backend_of(r), r.text)
        seen.add(proxy.backend_of(r))
        job = r.json()
        if job["status"] in ("succeeded", "failed"):
            return job, seen
        assert job["status"] in ("queued", "running")
        assert r.headers["Retry-After"]
        if time.monotonic() > deadline:
            pytest.fail(f"job not done in {deadline_s} s: {job}")
        time.sleep(2)


def test_long_synthesize_is_a_job_that_works_through_any_pod(replicas, http) -> None:
    proxy, backends = replicas
    assert len(TEXT_2000) == 2000
    # answered in one piece, 2,000 characters would not fit the mesh's budget: a 400 that says what to do
    refused = assert_error(http.post("/synthesize", json={"text": TEXT_2000}), 400, "InputTooLong")
    assert "Prefer: respond-async" in refused["message"]
    body = {"text": TEXT_2000, "voice_id": "af_heart", "output_format": "mp3"}
    # submitted twice, so that each pod runs one (they run side by side)
    accepted = [http.post("/synthesize", json=body, headers={"Prefer": "respond-async"}) for _ in range(2)]
    assert {proxy.backend_of(r) for r in accepted} == set(backends)
    for a in accepted:
        assert a.status_code == 202, a.text
        assert a.headers["Preference-Applied"] == "respond-async"
        assert a.headers["Location"] == a.json()["status_url"]
        assert a.json()["status"] in ("queued", "running") and a.json()["characters"] == 2000
    results = []
    for a in accepted:
        job, seen = _poll(http, proxy, a.headers["Location"], deadline_s=1800)
        assert job["status"] == "succeeded", job
        results.append((job, seen))
    assert set().union(*(seen for _, seen in results)) == set(backends), "polls never reached both pods"
    words = TEXT_2000.split()
    for job, _ in results:
        res = job["result"]
        assert res["characters"] == 2000 and res["format"] == "mp3" and res["language"] == "en"
        assert job["audio_seconds"] == pytest.approx(res["duration"], abs=0.01)
        # 2,000 characters at ~15 per second: about two minutes of speech
        assert 90 < res["duration"] < 200, res["duration"]
        # word timestamps for the whole long text, in order, inside the audio
        assert [w["word"] for w in res["words"]] == words
        starts = [w["start"] for w in res["words"]]
        assert starts == sorted(starts) and all(w["end"] >= w["start"] for w in res["words"])
        assert res["words"][-1]["end"] <= res["duration"] + 0.01
        assert res["words"][-1]["end"] > 0.8 * res["duration"]
        gets = [http.get(res["download_url"]) for _ in range(2)]
        assert {proxy.backend_of(d) for d in gets} == set(backends)
        for d in gets:
            assert d.status_code == 200, d.text
            assert d.headers["content-type"] == "audio/mpeg" and len(d.content) == res["bytes"]
        audio, sr = decode(gets[0].content)
        assert sr == 24000
        assert len(audio) / sr == pytest.approx(res["duration"], abs=0.2)
        assert rms(audio) > 0.02
        # no long silent stretch anywhere (every 10 s window has speech)
        win = 10 * sr
        assert min(rms(audio[i : i + win]) for i in range(0, len(audio) - win, win)) > 0.01
    # no request in all this waited anywhere near the per-try timeout (the proxy would have said 504)
    assert all(b in backends for _, _, b in proxy.served)


def test_timestamps_and_batch_beyond_the_cap_run_as_jobs(replicas, http) -> None:
    proxy, _ = replicas
    text = long_text(400)  # twice the 200-character cap of one-piece answers
    assert_error(http.post("/v1/audio/speech/timestamps", json={"input": text}), 400, "InputTooLong")
    ts = http.post("/v1/audio/speech/timestamps", json={"input": text, "response_format": "wav"},
                   headers={"Prefer": "respond-async"})
    assert ts.status_code == 202, ts.text
    items = [{"text": long_text(150)}, {"text": "And a short second item.", "voice_id": "bm_george"}]
    too_long = http.post("/synthesize/batch", json={"items": items * 2, "concatenate": True})
    assert_error(too_long, 400, "InputTooLong")
    batch = http.post("/synthesize/batch", json={"items": items * 2, "concatenate": True},
                      headers={"Prefer": "respond-async"})
    assert batch.status_code == 202, batch.text
    job, _ = _poll(http, proxy, ts.headers["Location"], deadline_s=600)
    assert job["status"] == "succeeded" and job["kind"] == "timestamps", job
    assert [w["word"] for w in job["result"]["words"]] == text.split()
    audio, sr = decode(http.get(job["result"]["download_url"]).content)
    assert len(audio) / sr == pytest.approx(job["result"]["duration"], abs=0.05)
    job, _ = _poll(http, proxy, batch.headers["Location"], deadline_s=600)
    assert job["status"] == "succeeded" and job["kind"] == "batch", job
    res = job["result"]
    assert [i["index"] for i in res["items"]] == [0, 1, 2, 3]
    starts = [i["start"] for i in res["items"]]
    assert starts[0] == 0 and starts == sorted(starts)
    for item, nxt in zip(res["items"], res["items"][1:] + [None], strict=True):
        end = nxt["start"] if nxt else res["duration"]
        assert item["start"] + item["duration"] == pytest.approx(end, abs=0.01)
        assert item["words"][0]["start"] >= item["start"] and item["words"][-1]["end"] <= end + 0.01
    audio, sr = decode(http.get(res["download_url"]).content)
    assert len(audio) / sr == pytest.approx(res["duration"], abs=0.2)


def test_job_status_of_an_unknown_job_is_404_everywhere(replicas, http) -> None:
    for r in [http.get("/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA") for _ in range(2)] + [http.get("/v1/jobs/nope")]:
        body = assert_error(r, 404, "NotFound")
        assert re.search("submit it again", body["message"])
