"""/metrics (per-app registry, bounded labels, PRD names) and the per-request JSON log line."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kokoro_api.logs import JsonFormatter
from kokoro_api.metrics import Metrics
from kokoro_api.requestlog import RequestLog, current


def samples(client) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found, name: str, **labels) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


def speech(client, **body):
    return client.post("/v1/audio/speech", json={"model": "kokoro", "voice": "af_heart", **body})


def test_synthesis_metrics_after_requests(client):
    before = samples(client)
    assert speech(client, input="Metrics, please.", response_format="wav", stream=False).status_code == 200
    r = speech(client, input="Streamed metrics.", response_format="mp3", stream_format="audio")
    assert r.status_code == 200
    assert speech(client, input="Hi", voice="nobody").status_code == 400
    ogg = client.post("/synthesize", json={"text": "Ogg metrics.", "output_format": "ogg"})
    assert ogg.status_code == 200
    after = samples(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/audio/speech"
    # PRD names
    assert delta("tts_requests_total", route=route, format="wav", status="200") == 1
    assert delta("tts_requests_total", route=route, format="mp3", status="200") == 1
    assert delta("tts_requests_total", route=route, format="none", status="400") == 1
    assert delta("tts_request_duration_seconds_count", route=route, format="wav", status="200") == 1
    assert delta("tts_audio_size_bytes_count", route=route, format="wav") == 1
    assert delta("tts_audio_size_bytes_sum", route=route, format="mp3") == len(r.content)
    assert delta("tts_text_length_characters_sum", route=route) == len("Metrics, please.") + len(
        "Streamed metrics."
    )
    assert ("tts_active_requests", frozenset({("route", route)})) in after  # the series exists ...
    assert value(after, "tts_active_requests", route=route) == 0  # ... and is back to 0
    # The service's own
    assert delta("kokoro_http_requests_total", method="POST", route=route, status="200") == 2
    assert delta("kokoro_http_request_duration_seconds_count", method="POST", route=route) == 3
    assert delta("kokoro_time_to_first_audio_seconds_count", route=route, streamed="true") == 1
    assert delta("kokoro_time_to_first_audio_seconds_count", route=route, streamed="false") == 1
    assert delta("kokoro_real_time_factor_count", route=route) == 2
    assert delta("kokoro_audio_seconds_total", route=route, format="wav") > 0.5
    assert delta("tts_requests_total", route="/synthesize", format="ogg", status="200") == 1
    assert delta("tts_audio_size_bytes_sum", route="/synthesize", format="ogg") == len(ogg.content)
    assert value(after, "kokoro_model_loaded") == 1
    assert value(after, "kokoro_queue_depth") == 0
    assert value(after, "kokoro_inflight_syntheses") == 0
    assert value(after, "kokoro_draining") == 0
    assert value(after, "kokoro_build_info", version="0.1.0") == 1


def test_labels_are_templates_never_raw_paths(client):
    client.get("/v1/no-such-route/abc123xyz")
    client.request("BREW", "/healthz")
    client.get("/web/app.js")
    found = samples(client)
    labels = {v for (_, ls) in found for _, v in ls}
    assert not any("abc123xyz" in v for v in labels)
    assert not any("app.js" in v for v in labels)
    assert value(found, "kokoro_http_requests_total", route="unmatched", status="404") >= 1
    assert value(found, "kokoro_http_requests_total", method="other", route="/healthz") >= 1
    methods = {dict(ls).get("method") for (n, ls) in found if n == "kokoro_http_requests_total"}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_each_app_has_its_own_registry(settings):
    from kokoro_api.app import create_app

    a, b = create_app(settings), create_app(settings)  # a second registration would raise on a global
    assert a.state.metrics.registry is not b.state.metrics.registry


def test_request_id_is_echoed_or_generated(client):
    r = client.get("/healthz", headers={"X-Request-ID": "trace-42.abc"})
    assert r.headers["x-request-id"] == "trace-42.abc"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    bad = client.get("/healthz", headers={"X-Request-ID": 'a b"c' + "x" * 300}).headers["x-request-id"]
    assert len(bad) == 32 and " " not in bad
    # also on errors and on streamed audio
    assert "x-request-id" in speech(client, input="Hi", voice="nobody").headers
    assert "x-request-id" in speech(client, input="Hi.", response_format="pcm", stream_format="audio").headers


def test_a_server_error_is_500_in_the_error_shape_with_its_request_id(settings, caplog):
    """An unexpected exception: a 500 without internals, quoting the request id that the log line has."""
    from fastapi.testclient import TestClient

    from kokoro_api.app import create_app

    app = create_app(settings)

    def boom():
        raise RuntimeError("secret internals /etc/passwd")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.INFO):
        r = c.get("/boom", headers={"X-Request-ID": "trace-500"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "trace-500"
    body = r.json()
    assert body["error"] == "InternalError" and body["details"] == {"request_id": "trace-500"}
    assert "secret" not in r.text and "RuntimeError" not in r.text
    logged = [rec for rec in caplog.records if getattr(rec, "request_id", None) == "trace-500"]
    assert any(rec.exc_info for rec in logged) and any(getattr(rec, "status", None) == 500 for rec in logged)


def test_one_log_line_per_request_without_text(client, caplog):
    caplog.set_level(logging.INFO, logger="kokoro_api.access")
    secret = "Confidential words here."
    r = speech(client, input=secret, response_format="wav", stream_format="audio")
    assert r.status_code == 200
    lines = [rec for rec in caplog.records if rec.name == "kokoro_api.access"]
    assert len(lines) == 1
    out = json.loads(JsonFormatter().format(lines[0]))
    assert out["request_id"] == r.headers["x-request-id"]
    assert out["method"] == "POST" and out["route"] == "/v1/audio/speech" and out["status"] == 200
    assert out["characters"] == len(secret) and out["format"] == "wav" and out["streamed"] is True
    assert out["audio_seconds"] > 0.5 and out["duration_ms"] > 0 and out["first_audio_ms"] > 0
    assert secret not in json.dumps(out)


async def _asgi_call(app, path: str = "/v1/audio/speech"):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("log_text", [False, True])
def test_text_is_logged_only_when_asked(settings, caplog, log_text):
    """The middleware on a stub app: the text appears only with log_text, streaming passes through."""

    async def stub(scope, receive, send):
        current().job(text="Say this.", voice="af_heart", fmt="mp3", streamed=True)
        current().sent(3)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    class _App:
        state = type("S", (), {})()

    caplog.set_level(logging.INFO, logger="kokoro_api.access")
    mw = RequestLog(stub, metrics=Metrics(_App(), settings), log_text=log_text)
    sent = asyncio.run(_asgi_call(mw))
    assert [m.get("more_body") for m in sent[1:]] == [True, False]
    rec = next(r for r in caplog.records if r.name == "kokoro_api.access")
    assert (getattr(rec, "text", None) == "Say this.") is log_text
    assert rec.characters == 9 and rec.audio_bytes == 3


def test_client_leaving_mid_stream_is_499(settings, caplog):
    async def stub(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        # cancelled by the client's disconnect: the body never ends

    class _App:
        state = type("S", (), {})()

    caplog.set_level(logging.INFO, logger="kokoro_api.access")
    metrics = Metrics(_App(), settings)
    asyncio.run(_asgi_call(RequestLog(stub, metrics=metrics)))
    rec = next(r for r in caplog.records if r.name == "kokoro_api.access")
    assert rec.status == 499 and rec.aborted is True
    assert metrics.registry.get_sample_value("kokoro_requests_aborted_total", {"route": "unmatched"}) == 1
