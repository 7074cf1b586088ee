"""Jobs: long syntheses that answer at once (202) and are fetched later, so no HTTP exchange outlives the
mesh's 30 s per-try timeout.

A job is validated before it is accepted, then waits in this pod's queue; one runner works through the
queue in order (one job at a time, so interactive requests keep the other workers). Its state lives in
memory and its audio in the download directory; both expire with the download files (audio_max_age_s).
A job belongs to the pod that accepted it: if that pod goes away, the job is gone (its status is a 404).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import APIError, Overloaded

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
JOBS_PREFIX = "/v1/jobs/"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


@dataclass
class Job:
    id: str
    kind: str
    characters: int
    work: Callable[[Job], Awaitable[dict[str, Any]]]
    status: str = QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    audio_seconds: float = 0.0  # synthesized so far (progress)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return JOBS_PREFIX + self.id

    @property
    def done(self) -> bool:
        return self.status in (SUCCEEDED, FAILED)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "kind": self.kind, "status_url": self.url,
            "characters": self.characters, "audio_seconds": round(self.audio_seconds, 3),
            "created_at": round(self.created_at, 3),
            "started_at": None if self.started_at is None else round(self.started_at, 3),
            "finished_at": None if self.finished_at is None else round(self.finished_at, 3),
            "result": self.result, "error": self.error,
        }


class JobQueue:
    def __init__(self, max_jobs: int, max_age_s: float) -> None:
        self.max_jobs = max_jobs
        self.max_age_s = max_age_s
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self.draining = False

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    def stop(self) -> None:
        """No more jobs (503), and the one running is cancelled: its pod is going away, and its result
        with it, so finishing it would only delay the shutdown. Jobs still queued are marked failed."""
        self.draining = True
        if self._runner is not None:
            self._runner.cancel()
        now = time.time()
        for job in self._jobs.values():
            if job.status == QUEUED:
                job.status, job.finished_at = FAILED, now
                job.error = {"error": "Cancelled", "message": "The server stopped before the job ran; submit "
                             "it again.", "details": {}}

    @property
    def pending(self) -> int:
        return sum(1 for j in self._jobs.values() if not j.done)

    def submit(self, kind: str, characters: int, work: Callable[[Job], Awaitable[dict[str, Any]]]) -> Job:
        """Accept a validated job, or raise Overloaded (503 + Retry-After) when this pod holds enough."""
        self.expire()
        if self.draining:
            raise Overloaded("The server is shutting down; submit the job again (another instance takes it).")
        if self.pending >= self.max_jobs:
            raise Overloaded(
                f"This instance holds {self.pending} unfinished jobs (the limit); retry shortly.", 5,
                {"jobs": self.pending, "max_jobs": self.max_jobs},
            )
        job = Job(secrets.token_urlsafe(16), kind, characters, work)
        self._jobs[job.id] = job
        self._queue.put_nowait(job)
        log.info("job accepted", extra={"job": job.id, "kind": kind, "characters": characters})
        return job

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.match(job_id):
            return None
        self.expire()
        return self._jobs.get(job_id)

    def expire(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        old = [j.id for j in self._jobs.values() if j.done and now - (j.finished_at or now) > self.max_age_s]
        for job_id in old:
            del self._jobs[job_id]

    async def _run(self) -> None:
        """The runner: one job at a time, in the order accepted."""
        while True:
            job = await self._queue.get()
            if job.done:  # cancelled while queued
                continue
            job.status, job.started_at = RUNNING, time.time()
            try:
                job.result = await job.work(job)
                job.status = SUCCEEDED
            except APIError as exc:
                job.status = FAILED
                job.error = {"error": exc.error, "message": exc.message, "details": exc.details}
            except asyncio.CancelledError:
                job.status = FAILED
                job.error = {"error": "Cancelled", "message": "The server stopped before the job ended; "
                             "submit it again.", "details": {}}
                raise
            except Exception:
                log.exception("job failed", extra={"job": job.id})
                job.status = FAILED
                job.error = {"error": "InternalError", "details": {},
                             "message": "The job failed unexpectedly; the server log has the cause."}
            finally:
                job.finished_at = time.time()
                log.info("job finished", extra={"job": job.id, "status": job.status,
                                                "seconds": round(job.finished_at - job.started_at, 2),
                                                "audio_seconds": round(job.audio_seconds, 2)})
