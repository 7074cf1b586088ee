"""GET /v1/audio/voices: the loaded voices and saved mixes; POST/DELETE to save and remove named mixes.

Without a shared directory (KOKORO_VOICES_DIR), each replica keeps saved mixes in memory, and a change is
copied to the peers (peers.py) before it is answered, so the next request finds the mix whichever pod it
lands on; a starting pod copies the peers' mixes before it turns ready (``pull_saved``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import InvalidVoice, NotFound
from ..peers import Peers, is_peer_request
from ..schemas import SaveVoiceRequest
from ..auth import saved_scope
from ..voices import SAVED_SCOPE, VoiceStore
from .deps import RuntimeDep

router = APIRouter(tags=["voices"])
log = logging.getLogger(__name__)
VOICES_PATH = "/v1/audio/voices"


def _copies_to_peers(request: Request) -> Peers | None:
    """The peers to copy a change to: none for a peer's own copy, or when the replicas share a directory."""
    peers: Peers = request.app.state.peers
    if not peers.enabled or is_peer_request(request.headers) or request.app.state.settings.voices_dir:
        return None
    return peers


async def _copy(request: Request, method: str, path: str, json: Any = None) -> dict[str, int] | None:
    peers = _copies_to_peers(request)
    if peers is None:
        return None
    answers = await peers.send_all(method, path, request.headers, json=json)
    ok = {200, 201} if method == "POST" else {200, 404}
    failed = {peer: a for peer, a in answers.items() if a not in ok}
    if failed:
        log.warning("saved voice change not copied to every peer", extra={"peers": failed, "path": path})
    return {"copied": len(answers) - len(failed), "failed": len(failed)}


async def pull_saved(peers: Peers, voices: VoiceStore) -> int:
    """Copy the peers' saved mixes that this pod lacks (at start-up, before it turns ready).

    With API keys on, mixes live per key (voices.SAVED_SCOPE): the peers list the namespace of the key
    this pod asks with (its first key), so that is the namespace they are copied into. Other keys' mixes
    reach a new pod when they are next saved (every save is copied to every peer).
    """
    key = peers.own_key
    scope = SAVED_SCOPE.set(saved_scope(key)) if key else None
    try:
        return await _pull_saved(peers, voices)
    finally:
        if scope is not None:
            SAVED_SCOPE.reset(scope)


async def _pull_saved(peers: Peers, voices: VoiceStore) -> int:
    added = 0
    for body in await peers.get_json(VOICES_PATH, await peers.urls()):
        for entry in body.get("saved", []) if isinstance(body, dict) else []:
            name, mix = entry.get("name"), entry.get("mix")
            if not isinstance(name, str) or not isinstance(mix, str) or name in voices.saved:
                continue
            try:
                voices.save_mix(name, mix)
                added += 1
            except InvalidVoice as exc:
                log.warning("a peer's saved voice skipped", extra={"voice": name[:64], "reason": exc.message})
    if added:
        log.info("saved voices copied from peers", extra={"voices": added})
    return added


@router.get(
    VOICES_PATH,
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
    VOICES_PATH,
    summary="Save a mix of built-in voices under a name (usable wherever a voice is)",
    status_code=201,
    responses={
        200: {"description": "Replaced an existing saved mix"},
        400: {"description": "Invalid name or mix"},
    },
)
async def save_voice(body: SaveVoiceRequest, request: Request, rt: RuntimeDep) -> JSONResponse:
    created = rt.voices.save_mix(body.name, body.mix)
    out: dict[str, Any] = {
        "name": body.name, "mix": body.mix.strip(), "language": rt.voices.language_of(body.name),
        "created": created,
    }
    replicas = await _copy(request, "POST", VOICES_PATH, {"name": body.name, "mix": body.mix})
    if replicas is not None:
        out["replicas"] = replicas
    return JSONResponse(out, status_code=201 if created else 200)


@router.delete(f"{VOICES_PATH}/{{name}}", summary="Delete a saved mix (built-in voices cannot be deleted)")
async def delete_voice(name: str, request: Request, rt: RuntimeDep) -> dict:
    if not rt.voices.delete_mix(name):
        raise NotFound(f"No saved voice named {name[:80]!r}.", {"name": name[:80]})
    out: dict[str, Any] = {"name": name, "deleted": True}
    replicas = await _copy(request, "DELETE", f"{VOICES_PATH}/{name}")
    if replicas is not None:
        out["replicas"] = replicas
    return out
