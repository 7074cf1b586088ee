"""POST /synthesize and POST /synthesize/batch: the deployment plan's own request shape.

Validation is the same as on /v1/audio/speech (``SynthesisJob.checked``) plus the language rules; a batch
validates every item before synthesizing anything and reports every bad item at once.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..audio.encode import MEDIA_TYPES, SAMPLE_RATE
from ..config import Settings
from ..errors import APIError, InputTooLong, InvalidRequest, InvalidVoice, UnsupportedLanguage
from ..runtime import Runtime
from ..schemas import LANGUAGES, BatchRequest, SynthesizeRequest
from .deps import AdmissionDep, RuntimeDep, SettingsDep
from .download import audio_store
from .respond import (
    AUDIO_RESPONSES,
    SynthesisJob,
    audio_headers,
    audio_response,
    encoded,
    keep_for_download,
    render_all,
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


def native_job(rt: Runtime, settings: Settings, req: SynthesizeRequest) -> SynthesisJob:
    """Validate one /synthesize request (also a batch item) into a job; raises APIError naming the problem."""
    lang = _language(req.language)
    job = SynthesisJob.checked(
        rt, settings, text=req.text, voice=req.voice_id, speed=req.speaking_rate, fmt=req.output_format,
        streamed=False, british=LANGUAGES[lang], field="text", normalize=req.normalize,
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


@router.post("/synthesize", summary="Text to speech (deployment-plan shape)", responses=AUDIO_RESPONSES)
async def synthesize(
    body: SynthesizeRequest, request: Request, rt: RuntimeDep, settings: SettingsDep, admission: AdmissionDep
) -> Response:
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
    rt: Runtime, settings: Settings, body: BatchRequest
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
            job = native_job(rt, settings, req)
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
    if total > settings.max_batch_chars:
        raise InputTooLong(
            f"The batch has {total} characters in all; the limit is {settings.max_batch_chars}. Split it.",
            {"field": "items", "length": total, "limit": settings.max_batch_chars},
        )
    return reqs, jobs


@router.post(
    "/synthesize/batch",
    summary="Several texts: one joined audio file (concatenate=true) or a JSON array of base64 audio",
    responses=AUDIO_RESPONSES,
)
async def synthesize_batch(
    body: BatchRequest, request: Request, rt: RuntimeDep, settings: SettingsDep, admission: AdmissionDep
) -> Response:
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
        item = {
            "index": i,
            "voice_id": job.voice,
            "language": _language(req.language),
            "speaking_rate": job.speed,
            "output_format": job.fmt,
            "media_type": MEDIA_TYPES[job.fmt],
            "sample_rate": SAMPLE_RATE,
            "duration": round(seg.seconds, 3),
            "characters": len(job.text),
            "audio": base64.b64encode(data).decode(),
        }
        if req.return_download_link:
            item["download_url"] = await keep_for_download(store, data, job.fmt)
        out.append(item)
    return JSONResponse(out)
