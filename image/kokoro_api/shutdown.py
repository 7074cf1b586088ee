"""Graceful shutdown for ``kokoro-api serve``: drain first, then let uvicorn close.

uvicorn's own SIGTERM handling closes the listening socket at once and, after shutting down, re-raises
the signal (so the process ends by the signal, not with exit code 0). Here the first SIGTERM (or Ctrl-C):

1. marks admission as draining: ``/readyz`` answers 503 and new synthesis requests get 503 Overloaded
   with Retry-After (the mesh retries them on another pod), while requests already admitted or queued
   carry on;
2. keeps the listener open for ``drain_delay_s`` (SIGTERM only), so kube-proxy and the mesh stop
   sending here before connections are refused;
3. waits for every admitted synthesis to release its worker (streams included), bounded by
   ``graceful_timeout_s`` from the signal;
4. tells uvicorn to exit; it stops listening, lets open responses finish (within what is left of the
   grace period), runs the lifespan shutdown, and the process exits 0.

A second signal exits at once (uvicorn's force exit).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, *, drain_delay_s: float, grace_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_delay_s = drain_delay_s
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not appended to _captured_signals: uvicorn would re-raise it after shutdown (exit by signal).
        if self._drain_task is not None or self._loop is None:  # second signal, or not serving yet
            self.should_exit = True
            self.force_exit = self._drain_task is not None
            return
        delay = self.drain_delay_s if sig == signal.SIGTERM else 0.0
        self._loop.call_soon_threadsafe(self._start_drain, delay, signal.Signals(sig).name)

    def _start_drain(self, delay: float, name: str) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain(delay, name))

    async def _drain(self, delay: float, name: str) -> None:
        started = time.monotonic()
        admission = getattr(self.app.state, "admission", None)  # None before the lifespan started
        if admission is not None:
            admission.draining = True
        jobs = getattr(self.app.state, "jobs", None)
        if jobs is not None:  # a job's result would leave with this pod: stop rather than wait for it
            jobs.stop()
        log.info(
            "draining",
            extra={
                "signal": name,
                "drain_delay_s": delay,
                "grace_s": self.grace_s,
                "in_flight": getattr(admission, "in_flight", 0),
                "queued": getattr(admission, "waiting", 0),
            },
        )
        await asyncio.sleep(delay)
        deadline = started + self.grace_s
        while admission is not None and (admission.in_flight or admission.waiting):
            if time.monotonic() >= deadline:
                log.warning(
                    "grace period over with syntheses in flight",
                    extra={"in_flight": admission.in_flight, "queued": admission.waiting},
                )
                break
            await asyncio.sleep(0.05)
        # What is left of the grace period bounds uvicorn's wait for open connections.
        self.config.timeout_graceful_shutdown = max(1.0, deadline - time.monotonic())
        log.info("drained", extra={"seconds": round(time.monotonic() - started, 2)})
        self.should_exit = True
