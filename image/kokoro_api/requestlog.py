"""One JSON log line and one set of metric observations per request, from a pure ASGI middleware.

The middleware starts a :class:`RequestRecord` and makes it the request's *current* record (a context
variable, so tasks the request starts, like a streamed body, see the same record). The synthesis code
(``api/respond.py``) adds what only it knows: format, characters, audio seconds and bytes, time to first
audio. When the response's last byte is sent (or the client leaves) the middleware logs the line and
updates the metrics. It never buffers a body, so streaming is untouched.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("kokoro_api.access")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")  # anything else is replaced, never logged raw
CLIENT_CLOSED = 499  # nginx's convention: the client left before the response was complete


@dataclass
class RequestRecord:
    request_id: str = ""
    method: str = ""
    route: str = "unmatched"
    start: float = 0.0
    status: int = 0
    duration: float = 0.0
    aborted: bool = False
    # filled in by the synthesis code
    fmt: str | None = None
    voice: str | None = None
    streamed: bool = False
    chars: int = 0
    text: str | None = None
    audio_seconds: float = 0.0
    audio_bytes: int = 0
    compute_seconds: float = 0.0
    g2p_seconds: float = 0.0  # text -> phonemes (part of compute_seconds)
    first_audio: float | None = None
    active: bool = False  # counted in tts_active_requests
    on_first_job: Callable[[RequestRecord], None] | None = field(default=None, repr=False)

    def job(self, *, text: str, voice: str, fmt: str, streamed: bool) -> None:
        """A synthesis job was accepted for this request (a batch adds several)."""
        if self.fmt is None and self.on_first_job is not None:
            self.on_first_job(self)
        self.fmt = self.fmt or fmt
        self.voice = self.voice or voice
        self.streamed = self.streamed or streamed
        self.chars += len(text)
        self.text = text if self.text is None else f"{self.text}\n{text}"

    def synthesized(self, audio_seconds: float, compute_seconds: float) -> None:
        self.audio_seconds += audio_seconds
        self.compute_seconds += compute_seconds

    def phonemized(self, seconds: float) -> None:
        self.g2p_seconds += seconds

    def sent(self, n_bytes: int) -> None:
        """Encoded audio is ready to go out; the first call fixes the time to first audio."""
        if self.first_audio is None and n_bytes:
            self.first_audio = time.perf_counter() - self.start
        self.audio_bytes += n_bytes


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "kokoro_request", default=None
)


def current() -> RequestRecord:
    """The running request's record (a throw-away one outside a request, so callers never check)."""
    rec = _current.get()
    return rec if rec is not None else RequestRecord(start=time.perf_counter())


def _route_template(scope: Scope, root_path: str) -> str:
    """The matched route's template (set by the router), a mount's prefix, or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    mounted = scope.get("root_path", "")
    if "endpoint" in scope and mounted != root_path and mounted.startswith(root_path):
        return mounted[len(root_path) :] or "unmatched"  # e.g. /web for every static file under it
    return "unmatched"


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if _VALID_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestLog:
    """Outermost middleware: request id (accepted or generated, echoed), timing, log line, metrics."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, log_text: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.log_text = log_text

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        root_path = scope.get("root_path", "")
        rec = RequestRecord(request_id=_request_id(scope), method=scope["method"], start=time.perf_counter())

        def first_job(rec: RequestRecord) -> None:  # routed by now: the template is known
            rec.route = _route_template(scope, root_path)
            rec.active = self.metrics.job_started(rec.route)

        rec.on_first_job = first_job
        scope.setdefault("state", {})["request_id"] = rec.request_id  # for the 500 handler, outside this
        header = (REQUEST_ID_HEADER, rec.request_id.encode())
        complete = False

        async def send_wrapper(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.start":
                rec.status = message["status"]
                rec.route = _route_template(scope, root_path)
                message["headers"] = [*message.get("headers", []), header]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        token = _current.set(rec)
        failed = False
        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            _current.reset(token)
            rec.duration = time.perf_counter() - rec.start
            rec.route = _route_template(scope, root_path)
            if not complete:
                if rec.aborted or (rec.status and not failed):  # the client left before the end
                    rec.aborted, rec.status = True, CLIENT_CLOSED
                else:  # the server failed (ServerErrorMiddleware answers 500)
                    rec.status = 500
            self._finish(rec)

    def _finish(self, rec: RequestRecord) -> None:
        try:
            self.metrics.observe(rec)
        except Exception:  # metrics must never break a response
            log.exception("metrics update failed")
        fields: dict[str, object] = {
            "request_id": rec.request_id,
            "method": rec.method,
            "route": rec.route,
            "status": rec.status,
            "duration_ms": round(rec.duration * 1000, 1),
        }
        if rec.fmt is not None:
            fields.update(
                format=rec.fmt,
                voice=rec.voice,
                streamed=rec.streamed,
                characters=rec.chars,
                audio_seconds=round(rec.audio_seconds, 3),
                audio_bytes=rec.audio_bytes,
                g2p_ms=round(rec.g2p_seconds * 1000, 1),
            )
            if rec.first_audio is not None:
                fields["first_audio_ms"] = round(rec.first_audio * 1000, 1)
            if self.log_text and rec.text is not None:
                fields["text"] = rec.text
        if rec.aborted:
            fields["aborted"] = True
        log.info("request", extra=fields)
