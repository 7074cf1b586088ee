"""POST /synthesize and POST /synthesize/batch: the deployment plan's own request shape.

Validation is the same as on /v1/audio/speech (``SynthesisJob.checked``) plus the language rules; a batch
validates every item before synthesizing anything and reports every bad item at once. With
``Prefer: respond-async`` either route answers 202 with a job (api/jobs.py) instead of the audio.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..admission import Admission
from ..audio.encode import MEDIA_TYPES, SAMPLE_RATE
from ..config import Settings
from ..errors import APIError, InputTooLong, InvalidRequest, InvalidVoice, UnsupportedLanguage
from ..jobs import Job
from ..runtime import Runtime
from ..schemas import LANGUAGES, BatchRequest, SynthesizeRequest
from ..synthesis import Segment
from .deps import AdmissionDep, RuntimeDep, SettingsDep
from .download import audio_store
from .jobs import JOB_RESPONSES, PreferHeader, accept, audio_result, one_text_job, render_for_job, wants_job
from .respond import (
    AUDIO_RESPONSES,
    SynthesisJob,
    audio_headers,
    audio_response,
    encoded,
    keep_for_download,
    render_all,
    word_list,
)

router = APIRouter(tags=["native"])


def _language(value: str) -> str:
    lang = value.strip().lower().replace("_", "-")
    if lang not in LANGUAGES:
        raise UnsupportedLanguage(
            f"Language {value!r} is not supported; use one of {', '.join(LANGUAGES)}.",
            {"field": "language", "language": value, "supported": list(LANGUAGES)},
        )
    return lang


def native_job(
    rt: Runtime, settings: Settings, req: SynthesizeRequest, deferred: bool = False
) -> SynthesisJob:
    """Validate one /synthesize request (also a batch item) into a job; raises APIError naming the problem.
    ``deferred``: it runs as a job (Prefer: respond-async), so the non-streamed cap does not apply."""
    lang = _language(req.language)
    job = SynthesisJob.checked(
        rt, settings, text=req.text, voice=req.voice_id, speed=req.speaking_rate, fmt=req.output_format,
        streamed=False, british=LANGUAGES[lang], field="text", deferred=deferred,
        normalize=req.normalize,
    )
    if lang != "en":
        accent = rt.voices.language_of(job.voice)
        if accent in LANGUAGES and accent != lang:
            raise InvalidVoice(
                f"Voice {job.voice!r} speaks {accent}, which contradicts language {lang!r}: pick a voice of "
                f"that accent (GET /v1/audio/voices) or language 'en'.",
                {"field": "voice_id", "voice": job.voice, "voice_language": accent, "language": lang},
            )
    return job


@router.post(
    "/synthesize",
    summary="Text to speech (deployment-plan shape)",
    responses={**AUDIO_RESPONSES, **JOB_RESPONSES},
)
async def synthesize(
    body: SynthesizeRequest, request: Request, rt: RuntimeDep, settings: SettingsDep, admission: AdmissionDep,
    prefer: PreferHeader = None,
) -> Response:
    if wants_job(prefer):
        job = native_job(rt, settings, body, deferred=True)
        return one_text_job(request, admission, job, language=_language(body.language))
    job = native_job(rt, settings, body)
    store = audio_store(request) if body.return_download_link else None
    response = await audio_response(job, admission, store=store)
    response.headers["X-Language"] = _language(body.language)
    return response


def _item_errors(index: int, exc: Exception) -> list[dict[str, Any]]:
    if isinstance(exc, ValidationError):
        return [
            {"index": index, "error": "ValidationError",
             "field": ".".join(str(p) for p in e["loc"]) or "item", "message": e["msg"]}
            for e in exc.errors()
        ]
    assert isinstance(exc, APIError)
    return [{"index": index, "error": exc.error, "field": exc.details.get("field"), "message": exc.message}]


def _batch_jobs(
    rt: Runtime, settings: Settings, body: BatchRequest, deferred: bool = False
) -> tuple[list[SynthesizeRequest], list[SynthesisJob]]:
    n = len(body.items)
    if not 1 <= n <= settings.max_batch_items:
        raise InvalidRequest(
            f"A batch holds 1 to {settings.max_batch_items} items; got {n}.",
            {"field": "items", "count": n, "limit": settings.max_batch_items},
        )
    reqs: list[SynthesizeRequest] = []
    jobs: list[SynthesisJob] = []
    bad: list[dict[str, Any]] = []
    for i, raw in enumerate(body.items):
        try:
            req = SynthesizeRequest.model_validate(raw)
            job = native_job(rt, settings, req, deferred)
        except (ValidationError, APIError) as exc:
            bad.extend(_item_errors(i, exc))
            continue
        if body.concatenate and reqs and req.output_format != reqs[0].output_format:
            bad.append({"index": i, "error": "ValidationError", "field": "output_format",
                        "message": f"With concatenate=true every item needs the same output_format "
                                   f"({reqs[0].output_format!r} as item 0); got {req.output_format!r}."})
            continue
        reqs.append(req)
        jobs.append(job)
    if bad:
        indexes = sorted({b["index"] for b in bad})
        raise InvalidRequest(
            f"{len(indexes)} of {n} batch items are invalid (items {', '.join(map(str, indexes[:20]))}"
            f"{', ...' if len(indexes) > 20 else ''}); nothing was synthesized.",
            {"items": bad},
        )
    total = sum(len(j.text) for j in jobs)
    limit = settings.max_job_chars if deferred else settings.max_batch_chars
    if total > limit:
        how = "Split it." if deferred else "Split it, or send it as a job (header 'Prefer: respond-async')."
        raise InputTooLong(
            f"The batch has {total} characters in all; the limit is {limit}. {how}",
            {"field": "items", "length": total, "limit": limit},
        )
    return reqs, jobs


@router.post(
    "/synthesize/batch",
    summary="Several texts: one joined audio file (concatenate=true) or a JSON array of base64 audio",
    responses={**AUDIO_RESPONSES, **JOB_RESPONSES},
)
async def synthesize_batch(
    body: BatchRequest, request: Request, rt: RuntimeDep, settings: SettingsDep, admission: AdmissionDep,
    prefer: PreferHeader = None,
) -> Response:
    if wants_job(prefer):
        return _batch_as_job(request, admission, body, *_batch_jobs(rt, settings, body, deferred=True))
    reqs, jobs = _batch_jobs(rt, settings, body)
    segs = await render_all(jobs, admission)
    store = audio_store(request)
    if body.concatenate:
        fmt = jobs[0].fmt
        audio = np.concatenate([s.audio for s in segs])
        data = await encoded(audio, fmt)
        headers = audio_headers(jobs[0])
        headers["X-Audio-Duration"] = f"{len(audio) / SAMPLE_RATE:.3f}"
        headers["X-Batch-Items"] = str(len(jobs))
        if body.return_download_link or any(r.return_download_link for r in reqs):
            headers["X-Download-Path"] = await keep_for_download(store, data, fmt)
        return Response(data, media_type=MEDIA_TYPES[fmt], headers=headers)
    out = []
    for i, (req, job, seg) in enumerate(zip(reqs, jobs, segs, strict=True)):
        data = await encoded(seg.audio, job.fmt)
        item = {**_item_meta(i, req, job, seg), "audio": base64.b64encode(data).decode()}
        if req.return_download_link:
            item["download_url"] = await keep_for_download(store, data, job.fmt)
        out.append(item)
    return JSONResponse(out)


def _item_meta(i: int, req: SynthesizeRequest, job: SynthesisJob, seg: Segment) -> dict[str, Any]:
    return {
        "index": i,
        "voice_id": job.voice,
        "language": _language(req.language),
        "speaking_rate": job.speed,
        "output_format": job.fmt,
        "media_type": MEDIA_TYPES[job.fmt],
        "sample_rate": SAMPLE_RATE,
        "duration": round(seg.seconds, 3),
        "characters": len(job.text),
    }


def _batch_as_job(
    request: Request, admission: Admission, body: BatchRequest, reqs: list[SynthesizeRequest],
    jobs: list[SynthesisJob],
) -> Response:
    """The batch as a job. Its result: one file (concatenate) with each item's place and word timestamps in
    it, or each item's metadata, words and download_url (its audio is too big for a status document)."""
    store = audio_store(request)

    async def work(progress: Job) -> dict[str, Any]:
        segs = await render_for_job(jobs, admission, progress)
        if body.concatenate:
            audio = np.concatenate([s.audio for s in segs])
            data = await encoded(audio, jobs[0].fmt)
            items, start = [], 0.0
            for i, (req, job, seg) in enumerate(zip(reqs, jobs, segs, strict=True)):
                items.append({**_item_meta(i, req, job, seg), "start": round(start, 3),
                              "words": word_list(seg.words, start)})
                start += seg.seconds
            return {"download_url": await keep_for_download(store, data, jobs[0].fmt), "format": jobs[0].fmt,
                    "media_type": MEDIA_TYPES[jobs[0].fmt], "sample_rate": SAMPLE_RATE,
                    "duration": round(len(audio) / SAMPLE_RATE, 3), "bytes": len(data), "items": items}
        out = []
        for i, (req, job, seg) in enumerate(zip(reqs, jobs, segs, strict=True)):
            out.append({**_item_meta(i, req, job, seg), **await audio_result(store, seg, job)})
        return {"items": out}

    return accept(request, "batch", sum(len(j.text) for j in jobs), work)
