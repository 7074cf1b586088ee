"""GET /v1/audio/voices: the loaded voices and saved mixes; POST/DELETE to save and remove named mixes."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..errors import NotFound
from ..schemas import SaveVoiceRequest
from .deps import RuntimeDep

router = APIRouter(tags=["voices"])


@router.get(
    "/v1/audio/voices",
    summary="Voices available (use an id, a saved mix, an alias such as 'alloy', or a mix: 'af_bella(2)+af_sky(1)')",
)
async def list_voices(rt: RuntimeDep) -> dict:
    saved = rt.voices.saved
    return {
        "voices": [asdict(v) for v in rt.voices.infos()],
        "saved": [
            {"name": name, "mix": mix, "language": rt.voices.language_of(name)}
            for name, mix in sorted(saved.items())
        ],
        "aliases": [{"name": name, "voice": voice} for name, voice in sorted(rt.voices.aliases.items())],
    }


@router.post(
    "/v1/audio/voices",
    summary="Save a mix of built-in voices under a name (usable wherever a voice is)",
    status_code=201,
    responses={
        200: {"description": "Replaced an existing saved mix"},
        400: {"description": "Invalid name or mix"},
    },
)
async def save_voice(body: SaveVoiceRequest, rt: RuntimeDep) -> JSONResponse:
    created = rt.voices.save_mix(body.name, body.mix)
    return JSONResponse(
        {"name": body.name, "mix": body.mix.strip(), "language": rt.voices.language_of(body.name),
         "created": created},
        status_code=201 if created else 200,
    )


@router.delete("/v1/audio/voices/{name}", summary="Delete a saved mix (built-in voices cannot be deleted)")
async def delete_voice(name: str, rt: RuntimeDep) -> dict:
    if not rt.voices.delete_mix(name):
        raise NotFound(f"No saved voice named {name[:80]!r}.", {"name": name[:80]})
    return {"name": name, "deleted": True}
