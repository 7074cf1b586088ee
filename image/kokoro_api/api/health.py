"""Kubernetes probes: liveness (/healthz, and /health as Kokoro-FastAPI names it) and readiness (/readyz).

Neither shows file system paths (a start-up error names files by their base name only; the log has
the full text).
"""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import APIError, error_json

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)
_ABS_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"(),]+/)+([^\s/:'\"(),]*)")


def without_paths(message: str) -> str:
    """``"Model file /root/.cache/x.onnx is bad"`` -> ``"Model file x.onnx is bad"``."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "", message)


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz(request: Request) -> JSONResponse:
    rt = request.app.state.runtime
    if rt.error:  # start-up failed for good: let Kubernetes restart the container
        return error_json(request.url.path, 503, "StartupFailed", without_paths(rt.error))
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
        msg = without_paths(rt.error) if rt.error else "The model is loading."
        return error_json(request.url.path, 503, "NotReady", msg, headers={"Retry-After": "2"})
    try:  # the path every synthesis takes first (saved-voices file re-read, default voice resolved)
        rt.voices.style(rt.settings.default_voice)
    except APIError as exc:
        return error_json(request.url.path, 503, "NotReady", f"Voices unusable: {exc.message}")
    body = {"status": "ready", "model": rt.model_path.name if rt.model_path else None}
    if rt.voices.problem:
        body["warnings"] = [without_paths(rt.voices.problem)]
    return JSONResponse(body)
