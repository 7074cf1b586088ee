"""GET /v1/download/{name}: audio kept for a download link (``return_download_link: true``, jobs).

The file is on the pod that made it. A pod that does not have it asks its peers (peers.py) and relays the
first one's answer, so a link works through the Service whichever pod the request lands on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from ..errors import NotFound
from ..peers import Peers, is_peer_request
from ..storage import DOWNLOAD_PREFIX, MEDIA_BY_EXT, AudioStore, is_name

router = APIRouter(tags=["download"])
RELAYED = ("content-type", "content-length", "content-disposition", "cache-control", "last-modified", "etag")


def audio_store(request: Request) -> AudioStore:
    return request.app.state.audio_store


async def _from_peer(name: str, request: Request) -> Response | None:
    peers: Peers = request.app.state.peers
    if not (peers.enabled and is_name(name)) or is_peer_request(request.headers):
        return None  # a peer's lookup is answered from this pod only: lookups never loop
    found = await peers.find(DOWNLOAD_PREFIX + name, request.headers)
    if found is None:
        return None
    headers = {k: v for k, v in found.headers.items() if k.lower() in RELAYED}

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in found.aiter_raw():
                yield chunk
        finally:  # also when the client leaves half-way: the peer connection goes back to the pool
            await found.aclose()

    return StreamingResponse(relay(), headers=headers)


@router.get(
    "/v1/download/{name}",
    summary="Download audio kept by return_download_link or a job",
    responses={
        200: {"content": {m: {} for m in sorted(set(MEDIA_BY_EXT.values()))}},
        404: {"description": "Unknown or expired"},
    },
)
async def download(name: str, request: Request) -> Response:
    path = audio_store(request).path(name)
    if path is None:
        relayed = await _from_peer(name, request)
        if relayed is not None:
            return relayed
        raise NotFound("No such download (unknown name or expired).", {"name": name[:100]})
    ext = name.rsplit(".", 1)[1]
    return FileResponse(
        path, media_type=MEDIA_BY_EXT[ext], filename=f"speech-{name[:8]}.{ext}",
        headers={"Cache-Control": "private, max-age=60"},
    )
