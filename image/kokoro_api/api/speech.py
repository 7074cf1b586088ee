"""POST /v1/audio/speech (OpenAI-compatible) and POST /v1/audio/speech/timestamps.

Kokoro-FastAPI's extra fields are honoured where they mean something here (``volume_multiplier``,
``lang_code``, ``stream``, ``return_download_link``, ``normalization_options.normalize``); the rest are
accepted, logged and named in the ``X-Ignored-Fields`` response header, never silently dropped.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from ..errors import UnsupportedLanguage
from ..schemas import LANG_CODES, SpeechRequest
from .deps import AdmissionDep, RuntimeDep, SettingsDep
from .download import audio_store
from .jobs import JOB_RESPONSES, PreferHeader, one_text_job, wants_job
from .respond import AUDIO_RESPONSES, SynthesisJob, audio_response, timestamps_response

log = logging.getLogger(__name__)
router = APIRouter(tags=["speech"])


def _british(lang_code: str | None) -> bool | None:
    if lang_code is None:
        return None
    key = lang_code.strip().lower().replace("_", "-")
    if key not in LANG_CODES:
        raise UnsupportedLanguage(
            f"lang_code {lang_code[:16]!r} is not supported: this server speaks English only; use 'a' "
            "(American) or 'b' (British), or leave it out to follow the voice.",
            {"field": "lang_code", "lang_code": lang_code[:16], "supported": list(LANG_CODES)},
        )
    return LANG_CODES[key]


def _job(body: SpeechRequest, rt, settings, *, streamed: bool, deferred: bool = False) -> SynthesisJob:
    return SynthesisJob.checked(
        rt, settings, text=body.input, voice=body.voice, speed=body.speed, fmt=body.response_format,
        streamed=streamed, british=_british(body.lang_code), volume=body.volume_multiplier,
        deferred=deferred, normalize=body.normalize,
    )


def _note_ignored(body: SpeechRequest, response: Response) -> Response:
    ignored = body.ignored_fields()
    if ignored:
        log.info("request fields ignored", extra={"ignored_fields": ignored})
        response.headers["X-Ignored-Fields"] = ", ".join(ignored)
    return response


@router.post("/v1/audio/speech", summary="Text to speech (OpenAI-compatible)", responses=AUDIO_RESPONSES)
async def create_speech(
    body: SpeechRequest, request: Request, rt: RuntimeDep, settings: SettingsDep, admission: AdmissionDep
) -> Response:
    job = _job(body, rt, settings, streamed=body.streamed)
    store = audio_store(request) if body.return_download_link else None
    response = await audio_response(job, admission, sse=body.stream_format == "sse", store=store)
    return _note_ignored(body, response)


@router.post(
    "/v1/audio/speech/timestamps",
    summary="Text to speech with word timestamps (JSON: base64 audio + words[{word, start, end}])",
    responses=JOB_RESPONSES,
)
async def create_speech_timestamps(
    body: SpeechRequest, request: Request, rt: RuntimeDep, settings: SettingsDep, admission: AdmissionDep,
    prefer: PreferHeader = None,
) -> Response:
    if wants_job(prefer):  # long texts: the words come in the job's result, the audio from its download_url
        job = _job(body, rt, settings, streamed=False, deferred=True)
        return one_text_job(request, admission, job, "timestamps")
    job = _job(body, rt, settings, streamed=False)
    return _note_ignored(body, await timestamps_response(job, admission))
