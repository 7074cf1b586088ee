"""The service's middleware stack and /metrics, installed by ``create_app`` in one call.

Order, outermost first: request log and metrics (sees every response, 401s and 413s included; adds
X-Request-ID), cancel-on-disconnect (a client that leaves stops its synthesis), CORS (off unless
``cors_origins``), API keys (off unless configured), then the body size limit and the app. All are pure
ASGI or Starlette's CORS middleware: nothing buffers a streamed body.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware

from .auth import PUBLIC_LISTS, ApiKeyAuth, ApiKeys
from .config import Settings
from .disconnect import CancelOnDisconnect
from .metrics import Metrics
from .requestlog import RequestLog

EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-Audio-Duration",
    "X-Download-Path",
    "X-Ignored-Fields",
    "Retry-After",
    "Content-Disposition",
]


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Call after the body size limit is added (middleware added later wraps what came before)."""
    keys = ApiKeys.from_settings(settings)
    if keys.enabled:
        app.add_middleware(ApiKeyAuth, keys=keys, public=PUBLIC_LISTS if settings.public_lists else frozenset())
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(CancelOnDisconnect)  # a whole-file synthesis stops when its client leaves
    metrics = Metrics(app, settings)
    app.state.metrics = metrics
    app.add_middleware(RequestLog, metrics=metrics, log_text=settings.log_text)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        body, content_type = request.app.state.metrics.exposition()
        return Response(body, media_type=content_type)
