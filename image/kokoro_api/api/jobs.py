"""Jobs over HTTP: ``Prefer: respond-async`` turns a synthesis into ``202 Accepted`` + a status URL;
``GET /v1/jobs/{id}`` reports it (asking the other replicas when the job is not on this pod), and the
audio is fetched from its download path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response

from ..admission import Admission, Lease
from ..audio.encode import MEDIA_TYPES, SAMPLE_RATE
from ..errors import InputTooLong, NotFound, Overloaded
from ..jobs import JOB_ID, JOBS_PREFIX, Job, JobQueue
from ..peers import Peers, is_peer_request
from ..storage import AudioStore
from ..synthesis import Segment
from .download import audio_store
from .respond import SynthesisJob, encoded, keep_for_download, word_list

router = APIRouter(tags=["jobs"])

PREFER_DOC = (
    "'respond-async': answer 202 at once with a job (status URL in Location); the audio is fetched from "
    "the job's download_url when done. Lifts the non-streamed length cap (long texts, word timestamps)."
)
PreferHeader = Annotated[str | None, Header(description=PREFER_DOC)]
JOB_RESPONSES = {202: {"description": "Accepted as a job (with Prefer: respond-async): the job's status"}}


def wants_job(prefer: str | None) -> bool:
    """RFC 7240: ``Prefer: respond-async`` (among other preferences, any case)."""
    if not prefer:
        return False
    return any(p.split("=", 1)[0].strip().lower() == "respond-async" for p in prefer.split(","))


def job_queue(request: Request) -> JobQueue:
    return request.app.state.jobs


def _status_headers(job: Job) -> dict[str, str]:
    return {} if job.done else {"Retry-After": "2"}


def accept(
    request: Request, kind: str, characters: int, work: Callable[[Job], Awaitable[dict[str, Any]]]
) -> JSONResponse:
    """Queue a validated job; 202 with its status (Location: the status URL)."""
    limit = request.app.state.settings.max_job_chars
    if characters > limit:
        raise InputTooLong(
            f"The job has {characters} characters; the limit is {limit} (KOKORO_MAX_JOB_CHARS). Split it.",
            {"length": characters, "limit": limit},
        )
    audio_store(request).check()  # an unusable download directory is a 507 now, not a failed job later
    job = job_queue(request).submit(kind, characters, work)
    headers = {"Location": job.url, "Preference-Applied": "respond-async", **_status_headers(job)}
    return JSONResponse(job.view(), status_code=202, headers=headers)


async def _patient_lease(admission: Admission) -> Lease:
    """A worker slot for a job: it waits as long as the queue is busy (it is not a client waiting on a
    connection), but not past the start of a shutdown."""
    while True:
        try:
            return await admission.acquire()
        except Overloaded:
            if admission.draining:
                raise
            await asyncio.sleep(1.0)


async def render_for_job(jobs: list[SynthesisJob], admission: Admission, progress: Job) -> list[Segment]:
    """Whole syntheses, in order, under one worker slot; the job's ``audio_seconds`` grows as they go."""
    lease = await _patient_lease(admission)

    def advance(seconds: float) -> None:
        progress.audio_seconds += seconds

    try:
        return [await job.whole(progress=advance) for job in jobs]
    finally:
        lease.release()


async def audio_result(store: AudioStore, seg: Segment, job: SynthesisJob) -> dict[str, Any]:
    """The result of a one-text job: where to download the audio, what it is, and its word timestamps."""
    data = await encoded(seg.audio, job.fmt)
    return {
        "download_url": await keep_for_download(store, data, job.fmt),
        "format": job.fmt, "media_type": MEDIA_TYPES[job.fmt], "sample_rate": SAMPLE_RATE,
        "duration": round(seg.seconds, 3), "bytes": len(data), "characters": len(job.text),
        "voice_id": job.voice, "words": word_list(seg.words),
    }


def one_text_job(
    request: Request, admission: Admission, job: SynthesisJob, kind: str = "synthesize", **extra: Any
) -> JSONResponse:
    store = audio_store(request)

    async def work(progress: Job) -> dict[str, Any]:
        (seg,) = await render_for_job([job], admission, progress)
        return {**await audio_result(store, seg, job), **extra}

    return accept(request, kind, len(job.text), work)


@router.get(
    "/v1/jobs/{job_id}",
    summary="A job's status (queued, running, succeeded with its result, or failed with its error)",
    responses={404: {"description": "Unknown or expired job, or its instance is gone (submit it again)"}},
)
async def job_status(job_id: str, request: Request) -> Response:
    job = job_queue(request).get(job_id)
    if job is not None:
        return JSONResponse(job.view(), headers=_status_headers(job))
    peers: Peers = request.app.state.peers
    if JOB_ID.match(job_id) and peers.enabled and not is_peer_request(request.headers):
        found = await peers.find(JOBS_PREFIX + job_id, request.headers)
        if found is not None:
            try:
                body = await found.aread()
            finally:
                await found.aclose()
            headers = {k: v for k, v in found.headers.items() if k.lower() == "retry-after"}
            return Response(body, media_type="application/json", headers=headers)
    raise NotFound(
        "No such job: unknown, expired, or the instance that ran it has restarted (submit it again).",
        {"job_id": job_id[:64]},
    )
