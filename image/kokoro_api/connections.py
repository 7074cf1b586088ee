"""Connection hygiene for ``kokoro-api serve``: clients that hold sockets or workers without using them.

* **Write timeout.** A streamed response whose client reads nothing for ``write_timeout_s`` is dropped:
  the socket is aborted, the stream sees a disconnect, its synthesis is cancelled and its worker freed.
  (uvicorn waits for a full socket buffer to drain for ever.)
* **Header timeout.** A connection must send a request's complete headers within ``header_timeout_s`` of
  opening (or of starting its next request on a kept-alive connection), else it is closed (slowloris).
* **Keep-alive.** An idle kept-alive connection is closed after ``keep_alive_s`` (uvicorn's
  ``timeout_keep_alive``).
* **Connection cap.** At most ``max_connections`` sockets are open at once, kept below the process's
  open-file limit (``RLIMIT_NOFILE`` minus ``FD_RESERVE`` for the model, logs, downloads and probes);
  a connection beyond it is closed at once. uvicorn's ``limit_concurrency`` (the same number) answers
  503 to requests arriving beyond it.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

#: File descriptors kept free for everything but client sockets (model and voice files, the audio and
#: saved-voices directories, log pipes, ONNX Runtime, the listening socket).
FD_RESERVE = 48


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered below the soft open-file limit (minus FD_RESERVE), at least 8."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - FD_RESERVE))


def guarded_protocol(*, header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header-read timeout and a hard cap on open connections."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _last_refusal = 0.0

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def,override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                now = time.monotonic()
                if now - GuardedH11Protocol._last_refusal > 10:
                    GuardedH11Protocol._last_refusal = now  # one warning per 10 s, not per socket
                    log.warning("connection refused: too many open connections",
                                extra={"connections": len(self.connections), "cap": max_connections})
                transport.abort()
                return
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE:  # a request is starting: its headers have a deadline
                self._arm_header_timer()
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the request's headers are complete
                self._disarm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log.info("connection closed: request headers not complete in time",
                         extra={"timeout_s": header_timeout_s})
                self.transport.close()

    return GuardedH11Protocol


class WriteTimeout:
    """Pure ASGI, outermost (wraps the app handed to uvicorn): a response body write that does not
    complete in ``timeout_s`` (the client stopped reading) aborts the connection. The app then sees
    ``http.disconnect`` and cancels the stream, which frees its worker."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        transport = getattr(getattr(send, "__self__", None), "transport", None)  # uvicorn's cycle.send

        async def timed_send(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
                return
            try:
                await asyncio.wait_for(send(message), self.timeout_s)
            except TimeoutError:
                log.warning("client stopped reading a response: connection dropped",
                            extra={"write_timeout_s": self.timeout_s, "path": scope.get("path")})
                if transport is None:
                    raise
                transport.abort()  # close() would wait for the unread buffer to drain

        await self.app(scope, receive, timed_send)
