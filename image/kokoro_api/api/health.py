"""Kubernetes probes: liveness (/healthz, and /health as Kokoro-FastAPI names it) and readiness (/readyz)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import error_json

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz(request: Request) -> JSONResponse:
    rt = request.app.state.runtime
    if rt.error:  # start-up failed for good: let Kubernetes restart the container
        return error_json(request.url.path, 503, "StartupFailed", rt.error)
    return JSONResponse({"status": "ok"})


@router.get("/health", summary="Liveness under Kokoro-FastAPI's path ({'status': 'healthy'})")
async def health(request: Request) -> JSONResponse:
    response = await healthz(request)
    if response.status_code != 200:
        return response
    return JSONResponse({"status": "healthy"})


@router.get("/readyz", summary="Readiness: model and voices loaded, warm-up done, not draining")
async def readyz(request: Request) -> JSONResponse:
    rt = request.app.state.runtime
    if request.app.state.admission.draining:
        return error_json(request.url.path, 503, "ShuttingDown", "The server is shutting down.")
    if not rt.ready:
        msg = rt.error or "The model is loading."
        return error_json(request.url.path, 503, "NotReady", msg, headers={"Retry-After": "2"})
    return JSONResponse({"status": "ready", "model": rt.model_path.name if rt.model_path else None})
