"""Optional API keys (env and file, rotation without restart) and CORS (off by default).

These apps load no model (their voices path does not exist), so they are cheap: an accepted key shows as
anything but 401 (the synthesis routes answer 503 NotReady), and the open routes answer as usual.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from helpers import assert_error
from kokoro_api.app import create_app
from kokoro_api.auth import ApiKeys, parse_keys
from kokoro_api.config import Settings
from kokoro_api.errors import StartupError

SPEECH = {"model": "kokoro", "input": "Hello.", "voice": "af_heart"}
PROTECTED = [
    ("POST", "/v1/audio/speech"),
    ("GET", "/v1/limits"),
    ("POST", "/v1/audio/voices"),
    ("POST", "/synthesize"),
    ("POST", "/synthesize/batch"),
]
LISTS = ["/v1/models", "/v1/audio/models", "/v1/audio/voices"]  # open by default (KOKORO_PUBLIC_LISTS)
OPEN = ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/web/"]


def _client(tmp_path: Path, **settings) -> TestClient:
    s = Settings(voices_path=tmp_path / "none.npz", cache_dir=tmp_path / "cache", warmup=False, **settings)
    return TestClient(create_app(s))


@pytest.fixture
def keyed(tmp_path):
    with _client(tmp_path, api_keys="alpha-key, beta-key") as c:
        yield c


@pytest.mark.parametrize("method,path", PROTECTED)
def test_protected_routes_need_a_key(keyed, method, path):
    r = keyed.request(method, path, json=SPEECH)
    body = assert_error(r, 401, "Unauthorized")
    assert "Bearer" in body["message"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "x-request-id" in r.headers
    for bad in ("Bearer wrong", "Bearer alpha-key2", "Basic YWxwaGEta2V5", "alpha-key", "Bearer "):
        assert keyed.request(method, path, json=SPEECH, headers={"Authorization": bad}).status_code == 401


@pytest.mark.parametrize("path", LISTS)
def test_lists_are_readable_without_a_key_unless_closed(tmp_path, keyed, path):
    """Open WebUI fetches the model and voice lists without a key; KOKORO_PUBLIC_LISTS=false closes them."""
    r = keyed.get(path)
    assert r.status_code != 401, r.text  # 200 for the model lists; 503 NotReady for voices (no model here)
    assert keyed.post("/v1/audio/voices", json={"name": "x", "mix": "af_heart"}).status_code == 401
    with _client(tmp_path, api_keys="alpha-key", public_lists=False) as closed:
        assert_error(closed.get(path), 401, "Unauthorized")
        assert closed.get(path, headers={"Authorization": "Bearer alpha-key"}).status_code != 401


@pytest.mark.parametrize("key", ["alpha-key", "beta-key"])
def test_each_configured_key_is_accepted(keyed, key):
    headers = {"Authorization": f"Bearer {key}"}
    assert keyed.get("/v1/models", headers=headers).status_code == 200
    r = keyed.post("/v1/audio/speech", json=SPEECH, headers={"Authorization": f"bearer {key}"})
    assert r.status_code != 401  # past the key check (503 NotReady: this app has no model)


@pytest.mark.parametrize("path", OPEN)
def test_health_metrics_docs_and_studio_stay_open(keyed, path):
    assert keyed.get(path).status_code != 401


def test_no_keys_means_open(tmp_path):
    with _client(tmp_path) as c:
        assert c.get("/v1/models").status_code == 200
    with _client(tmp_path, api_keys=" , ") as c:  # an empty optional Secret: still open
        assert c.get("/v1/models").status_code == 200


def test_keys_file_is_reloaded_on_change(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# rotation test\nold-key\n")
    with _client(tmp_path, api_keys_file=path) as c:

        def status(key: str) -> int:
            return c.get("/v1/limits", headers={"Authorization": f"Bearer {key}"}).status_code

        assert status("old-key") == 200 and status("new-key") == 401
        path.write_text("old-key\n  # added:\nnew-key\n")  # step 1 of a rotation: both
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert status("old-key") == 200 and status("new-key") == 200
        path.write_text("new-key\n")  # step 2: the old key is gone
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        assert status("old-key") == 401 and status("new-key") == 200
        path.unlink()  # an unreadable file keeps the last keys: it never opens the API
        assert status("new-key") == 200 and status("other") == 401


def test_missing_keys_file_fails_at_start(tmp_path):
    with pytest.raises(StartupError, match="API keys file"):
        create_app(Settings(voices_path=tmp_path / "v.npz", api_keys_file=tmp_path / "missing"))


def test_keys_are_not_in_settings_repr():
    s = Settings(api_keys="very-secret-key")
    assert "very-secret-key" not in repr(s) and "very-secret-key" not in str(s.model_dump())


def test_key_parsing():
    assert parse_keys(" alpha-key ,beta-key,, gamma-key ", ",") == ["alpha-key", "beta-key", "gamma-key"]
    assert parse_keys("k", ",") == ["k"]  # one key: nothing was split
    # comments only at the start of a line: '#' and any other printable character may be in a key
    assert parse_keys("# comment\n a \n\n  # indented comment\nb#not-a-comment\nc d\n") == [
        "a", "b#not-a-comment", "c d"]
    keys = ApiKeys(["k1"])
    assert keys.check("k1") and not keys.check("k") and not keys.check("k1 ") and not keys.check("")


def test_a_key_with_a_hash_in_the_file_is_accepted_whole(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# keys\nabc#def-long-key\n")
    with _client(tmp_path, api_keys_file=path) as c:
        def status(key: str) -> int:  # an empty body: 400 once the key is accepted (the lists are public)
            return c.post("/v1/audio/speech", json={}, headers={"Authorization": f"Bearer {key}"}).status_code

        assert status("abc#def-long-key") != 401  # was cut at '#'
        assert status("abc") == 401  # ... and 'abc' was accepted


def test_a_key_split_by_the_variables_comma_is_refused_at_start():
    with pytest.raises(StartupError, match="split"):
        parse_keys("secret-part-one,x7", ",")  # one key 'secret-part-one,x7' would become two
    with pytest.raises(StartupError, match="control character"):
        parse_keys("good-key-1\x00,good-key-2", ",")
    # keys with commas: a JSON list
    assert parse_keys('["key,with,commas", "another-key"]', ",") == ["key,with,commas", "another-key"]
    with pytest.raises(StartupError, match="JSON"):
        parse_keys('["unterminated', ",")


def test_cors_is_off_by_default(tmp_path):
    with _client(tmp_path) as c:
        r = c.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        pre = c.options(
            "/v1/audio/speech",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in pre.headers


def test_cors_origins_enable_it_and_preflight_needs_no_key(tmp_path):
    with _client(tmp_path, cors_origins="https://app.example", api_keys="k") as c:
        pre = c.options(
            "/v1/audio/speech",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        r = c.get("/v1/models", headers={"Origin": "https://app.example", "Authorization": "Bearer k"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        other = c.get("/v1/models", headers={"Origin": "https://evil.example", "Authorization": "Bearer k"})
        assert "access-control-allow-origin" not in other.headers
        # a 401 still carries the CORS header, so a browser can read the error
        denied = c.get("/v1/limits", headers={"Origin": "https://app.example"})
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == "https://app.example"
