"""POST /v1/audio/speech (OpenAI-compatible) and POST /v1/audio/speech/timestamps."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..schemas import SpeechRequest
from .deps import AdmissionDep, RuntimeDep, SettingsDep
from .download import audio_store
from .respond import AUDIO_RESPONSES, SynthesisJob, audio_response, timestamps_response

router = APIRouter(tags=["speech"])


def _job(body: SpeechRequest, rt, settings, *, streamed: bool) -> SynthesisJob:
    british = None if body.lang_code is None else body.lang_code == "b"
    return SynthesisJob.checked(
        rt, settings, text=body.input, voice=body.voice, speed=body.speed, fmt=body.response_format,
        streamed=streamed, british=british, normalize=body.normalize,
    )


@router.post("/v1/audio/speech", summary="Text to speech (OpenAI-compatible)", responses=AUDIO_RESPONSES)
async def create_speech(
    body: SpeechRequest, request: Request, rt: RuntimeDep, settings: SettingsDep, admission: AdmissionDep
) -> Response:
    job = _job(body, rt, settings, streamed=body.streamed)
    store = audio_store(request) if body.return_download_link else None
    return await audio_response(job, admission, sse=body.stream_format == "sse", store=store)


@router.post(
    "/v1/audio/speech/timestamps",
    summary="Text to speech with word timestamps (JSON: base64 audio + words[{word, start, end}])",
)
async def create_speech_timestamps(
    body: SpeechRequest, rt: RuntimeDep, settings: SettingsDep, admission: AdmissionDep
) -> Response:
    job = _job(body, rt, settings, streamed=False)
    return await timestamps_response(job, admission)
