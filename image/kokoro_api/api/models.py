"""GET /v1/models (OpenAI-compatible list), GET /v1/audio/models (Open WebUI's and Kokoro-FastAPI's list)
and GET /v1/limits (what the server accepts)."""

from __future__ import annotations

from fastapi import APIRouter

from ..schemas import MODEL_IDS, SPEED_MAX, SPEED_MIN
from .deps import SettingsDep

router = APIRouter(tags=["models"])
CREATED = 1735689600  # Kokoro-82M v1.0 release (2025-01)


@router.get("/v1/models", summary="Models this server answers to")
async def list_models() -> dict:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "hexgrad"} for m in MODEL_IDS],
    }


@router.get("/v1/audio/models", summary="Speech models, as Open WebUI and Kokoro-FastAPI list them")
async def list_audio_models() -> dict:
    return {"models": [{"id": m, "name": m} for m in MODEL_IDS]}


@router.get("/v1/limits", summary="Request limits of this server")
async def limits(settings: SettingsDep) -> dict:
    return {
        "max_input_chars": settings.max_input_chars,
        "max_unstreamed_chars": settings.max_unstreamed_chars,
        "max_batch_items": settings.max_batch_items,
        "max_batch_chars": settings.max_batch_chars,
        "max_job_chars": settings.max_job_chars,
        "speed_min": SPEED_MIN,
        "speed_max": SPEED_MAX,
        "default_voice": settings.default_voice,
    }
