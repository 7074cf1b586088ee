"""Optional API keys: ``Authorization: Bearer <key>`` on ``/v1/*`` and ``/synthesize*``.

Keys come from ``KOKORO_API_KEYS`` (comma-separated) and/or ``KOKORO_API_KEYS_FILE`` (one key a line,
``#`` comments). With neither set (or both empty) the API is open. The file is re-read when it changes,
so a Kubernetes Secret mounted as a volume rotates keys without a restart. Health, metrics, docs and the
studio page stay open. Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every
configured key, so neither timing nor length tells anything about a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import StartupError, error_body

log = logging.getLogger(__name__)

PROTECTED_PREFIXES = ("/v1/", "/synthesize")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_keys(text: str, sep: str | None = None) -> list[str]:
    """Keys from a comma-separated value (sep=",") or a file's lines (sep=None: lines, # comments)."""
    if sep is None:
        parts = [line.split("#", 1)[0] for line in text.splitlines()]
    else:
        parts = text.split(sep)
    return [p.strip() for p in parts if p.strip()]


class ApiKeys:
    """The accepted keys: fixed ones from the environment plus a file's, reloaded when its mtime changes."""

    def __init__(self, keys: list[str], path: Path | None = None) -> None:
        self._fixed = [_digest(k) for k in keys]
        self.path = path
        self._file: list[bytes] = []
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            try:
                self._reload()
            except OSError as exc:
                raise StartupError(f"API keys file {path} cannot be read: {exc}") from None

    @classmethod
    def from_settings(cls, settings) -> ApiKeys:  # type: ignore[no-untyped-def]
        raw = settings.api_keys.get_secret_value() if settings.api_keys is not None else ""
        return cls(parse_keys(raw, ","), settings.api_keys_file)

    def _reload(self) -> None:
        assert self.path is not None
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._file = [_digest(k) for k in parse_keys(self.path.read_text())]
            self._stamp = stamp
            log.info("API keys loaded", extra={"keys_file": str(self.path), "keys": len(self._file)})

    def _current(self) -> list[bytes]:
        if self.path is not None:
            try:
                self._reload()
            except OSError as exc:  # keep the last good keys; a missing file must not open the API
                log.warning("API keys file unreadable, keeping the previous keys: %s", exc)
        return self._fixed + self._file

    @property
    def enabled(self) -> bool:
        return bool(self._fixed) or self.path is not None

    def check(self, presented: str) -> bool:
        digest = _digest(presented)
        ok = False
        for key in self._current():  # no early exit: the time does not depend on which key matched
            ok |= hmac.compare_digest(digest, key)
        return ok


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class ApiKeyAuth:
    """Pure ASGI: 401 in the error shape (with ``WWW-Authenticate: Bearer``) before the body is read."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] != "OPTIONS"  # CORS preflights carry no credentials
            and scope["path"].startswith(PROTECTED_PREFIXES)
        ):
            token = _bearer(scope)
            if token is None or not self.keys.check(token):
                missing = token is None
                message = (
                    "This API needs a key: send 'Authorization: Bearer <key>'."
                    if missing
                    else "The API key is not valid."
                )
                body = json.dumps(error_body("Unauthorized", message)).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="kokoro-api"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def own_key(settings) -> str | None:  # type: ignore[no-untyped-def]
    """A key this service accepts, for its requests to its own replicas (None: the API is open)."""
    raw = settings.api_keys.get_secret_value() if settings.api_keys is not None else ""
    keys = parse_keys(raw, ",")
    if not keys and settings.api_keys_file is not None:
        try:
            keys = parse_keys(Path(settings.api_keys_file).read_text())
        except OSError:
            keys = []
    return keys[0] if keys else None
