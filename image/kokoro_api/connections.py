"""Connection hygiene for ``kokoro-api serve``: clients that hold sockets or workers without using them.

* **Write timeout.** A streamed response whose client reads nothing for ``write_timeout_s`` is dropped:
  the socket is aborted, the stream sees a disconnect, its synthesis is cancelled and its worker freed.
  (uvicorn waits for a full socket buffer to drain for ever.)
* **Send buffer.** Each client socket's kernel send buffer is fixed at ``send_buffer_kb`` (Linux
  otherwise grows it up to 4 MB, ~85 s of PCM audio, before a write can stall): bounds the kernel memory
  a slow reader holds and makes the write timeout apply within seconds of the client stopping.
* **Header timeout.** A connection must send a request's complete headers within ``header_timeout_s`` of
  opening (or of starting its next request on a kept-alive connection), else it is closed (slowloris).
* **Keep-alive.** An idle kept-alive connection is closed after ``keep_alive_s`` (uvicorn's
  ``timeout_keep_alive``).
* **Connection cap.** At most ``max_connections`` sockets are open at once, kept below the process's
  open-file limit (``RLIMIT_NOFILE`` minus ``FD_RESERVE`` for the model, logs, downloads and probes).
  A connection beyond it evicts the oldest *idle* one (no request in progress: an idle keep-alive or a
  socket still sending its headers), so probes and real clients get through while idle sockets pile
  up; only when every connection is busy is the new one closed at once. uvicorn's
  ``limit_concurrency`` (the cap plus ``CONCURRENCY_HEADROOM``) answers 503 to requests beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

#: File descriptors kept free for everything but client sockets (model and voice files, the audio and
#: saved-voices directories, log pipes, ONNX Runtime, the listening socket).
FD_RESERVE = 48
#: uvicorn's limit_concurrency is the cap plus this: an evicted socket may not be gone yet when the
#: request that evicted it completes its headers.
CONCURRENCY_HEADROOM = 16


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered below the soft open-file limit (minus FD_RESERVE), at least 8."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - FD_RESERVE))


def accept_backlog(cap: int) -> int:
    """uvicorn's ``backlog`` for a connection cap. asyncio accepts up to ``backlog`` sockets in one go
    before any protocol runs (so before the cap can evict anything): with uvicorn's 2048, a burst of idle
    sockets under a low open-file limit took every descriptor and start-up failed opening its files
    (EMFILE). Where the file limit sets the cap, accept at most half the reserve at a time."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft - FD_RESERVE > cap:
        return 2048
    return FD_RESERVE // 2


def guarded_protocol(
    *, header_timeout_s: float, max_connections: int, send_buffer_bytes: int
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header-read timeout, a fixed send buffer and a connection cap."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _opened = 0.0
        _last_warning = 0.0

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def,override]
            super().connection_made(transport)
            self._opened = time.monotonic()
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
            if len(self.connections) > max_connections:
                victim = self._oldest_idle()
                now = time.monotonic()
                if now - GuardedH11Protocol._last_warning > 10:
                    GuardedH11Protocol._last_warning = now  # one warning per 10 s, not per socket
                    log.warning("too many open connections: closing idle ones",
                                extra={"connections": len(self.connections), "cap": max_connections})
                if victim is None:  # every connection has a request in progress: refuse this one
                    transport.abort()
                    return
                victim.transport.abort()
            self._arm_header_timer()

        def _idle(self) -> bool:
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def _oldest_idle(self) -> GuardedH11Protocol | None:
            idle = [c for c in self.connections
                    if c is not self and isinstance(c, GuardedH11Protocol) and c._idle()
                    and not c.transport.is_closing()]
            return min(idle, key=lambda c: c._opened, default=None)

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
