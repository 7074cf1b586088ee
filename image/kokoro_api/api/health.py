"""Kubernetes probes: liveness (/healthz) and readiness (/readyz)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import error_body

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz(request: Request) -> JSONResponse:
    rt = request.app.state.runtime
    if rt.error:  # start-up failed for good: let Kubernetes restart the container
        return JSONResponse(error_body("StartupFailed", rt.error), 503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: model and voices loaded, warm-up done, not draining")
async def readyz(request: Request) -> JSONResponse:
    rt = request.app.state.runtime
    if request.app.state.admission.draining:
        return JSONResponse(error_body("ShuttingDown", "The server is shutting down."), 503)
    if not rt.ready:
        msg = rt.error or "The model is loading."
        return JSONResponse(error_body("NotReady", msg), 503, headers={"Retry-After": "2"})
    return JSONResponse({"status": "ready", "model": rt.model_path.name if rt.model_path else None})
