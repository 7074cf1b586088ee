"""GET /v1/audio/voices: the loaded voices."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from .deps import RuntimeDep

router = APIRouter(tags=["voices"])


@router.get("/v1/audio/voices", summary="Voices available (use an id, or mix: 'af_bella(2)+af_sky(1)')")
async def list_voices(rt: RuntimeDep) -> dict:
    return {"voices": [asdict(v) for v in rt.voices.infos()]}
