"""GET /v1/download/{name}: audio kept for a download link (``return_download_link: true``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ..errors import NotFound
from ..storage import MEDIA_BY_EXT, AudioStore

router = APIRouter(tags=["download"])


def audio_store(request: Request) -> AudioStore:
    return request.app.state.audio_store


@router.get(
    "/v1/download/{name}",
    summary="Download audio kept by return_download_link",
    responses={
        200: {"content": {m: {} for m in sorted(set(MEDIA_BY_EXT.values()))}},
        404: {"description": "Unknown or expired"},
    },
)
async def download(name: str, request: Request) -> FileResponse:
    path = audio_store(request).path(name)
    if path is None:
        raise NotFound("No such download (unknown name or expired).", {"name": name[:100]})
    ext = name.rsplit(".", 1)[1]
    return FileResponse(
        path, media_type=MEDIA_BY_EXT[ext], filename=f"speech-{name[:8]}.{ext}",
        headers={"Cache-Control": "private, max-age=60"},
    )
