"""Optional API keys: ``Authorization: Bearer <key>`` on ``/v1/*`` and ``/synthesize*``.

Keys come from ``KOKORO_API_KEYS`` and/or ``KOKORO_API_KEYS_FILE``. With neither set (or both empty) the
API is open.

* The file holds one key a line; a line whose first non-blank character is ``#`` is a comment. Anything
  else on a line is the key (surrounding blanks stripped): ``#`` and every other printable character may
  appear in a key.
* The variable separates keys with commas (or is a JSON list of strings, ``["k1", "k2"]``, for keys that
  contain commas). A key containing a comma would be split silently, so when the variable holds several
  keys each must be at least MIN_SPLIT_KEY characters, else start-up fails and says why.

With keys on, each key has its own namespace of saved voice mixes (voices.SAVED_SCOPE). The file is
re-read when it changes, so a Kubernetes Secret mounted as a volume rotates keys without a restart. Health, metrics, docs and the
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

from .errors import StartupError, error_bytes
from .voices import SAVED_SCOPE

log = logging.getLogger(__name__)

PROTECTED_PREFIXES = ("/v1/", "/synthesize")
# What a client lists before it has been configured (Open WebUI fetches these without a key): readable
# without a key unless KOKORO_PUBLIC_LISTS=false.
PUBLIC_LISTS = frozenset({"/v1/models", "/v1/audio/models", "/v1/audio/voices"})


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


MIN_SPLIT_KEY = 8


def parse_keys(text: str, sep: str | None = None) -> list[str]:
    """Keys from the variable (sep=","; or a JSON list) or a file's lines (sep=None; ``#`` comment lines).

    Raises StartupError for a key with control characters, and for a comma-separated value whose pieces
    look like a key that the comma split (a piece shorter than MIN_SPLIT_KEY).
    """
    if sep is None:
        keys = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
        keys = [k for k in keys if k]
    elif text.strip().startswith("["):
        try:
            keys = json.loads(text)
        except ValueError as exc:
            raise StartupError(f"KOKORO_API_KEYS looks like a JSON list but is not JSON: {exc}") from None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise StartupError("KOKORO_API_KEYS as JSON must be a list of strings.")
        keys = [k.strip() for k in keys if k.strip()]
    else:
        keys = [p.strip() for p in text.split(sep) if p.strip()]
        short = [k for k in keys if len(k) < MIN_SPLIT_KEY]
        if len(keys) > 1 and short:
            raise StartupError(
                f"KOKORO_API_KEYS holds {len(keys)} comma-separated keys and {len(short)} of them are "
                f"shorter than {MIN_SPLIT_KEY} characters: was a key containing ',' split in two? Keys in "
                "this variable are separated by commas; give keys with commas as a JSON list "
                '(["key,one", "key2"]) or in KOKORO_API_KEYS_FILE (one a line).'
            )
    for k in keys:
        if not k.isprintable():
            raise StartupError("An API key holds a control character (keys are printable text).")
    return keys


def saved_scope(key: str) -> str:
    """The saved-voices namespace of a key: a one-way id (the key itself is never stored)."""
    return hashlib.sha256(b"kokoro-saved-scope\0" + key.encode()).hexdigest()[:32]


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
            except (OSError, StartupError) as exc:  # keep the last good keys; never open the API
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

    def __init__(self, app: ASGIApp, keys: ApiKeys, public: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.keys = keys
        self.public = public  # GET paths that need no key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] != "OPTIONS"  # CORS preflights carry no credentials
            and scope["path"].startswith(PROTECTED_PREFIXES)
            and not (scope["method"] in ("GET", "HEAD") and scope["path"] in self.public)
        ):
            token = _bearer(scope)
            if token is None or not self.keys.check(token):
                missing = token is None
                message = (
                    "This API needs a key: send 'Authorization: Bearer <key>'."
                    if missing
                    else "The API key is not valid."
                )
                body = error_bytes(scope["path"], 401, "Unauthorized", message)
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
            SAVED_SCOPE.set(saved_scope(token))  # this key's own saved mixes
        elif scope["type"] == "http" and (token := _bearer(scope)) is not None and self.keys.check(token):
            SAVED_SCOPE.set(saved_scope(token))  # a public list read with a key lists that key's mixes
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
