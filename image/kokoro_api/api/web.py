"""The studio page: static files from ``kokoro_api/web`` served at ``/web``.

Plain HTML, CSS and JavaScript modules, no build step and nothing fetched from other origins, so the
page works offline. ``create_app`` calls :func:`mount_web`.
"""

from __future__ import annotations

from pathlib import Path

import fastapi
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
MOUNT_PATH = "/web"


class _StudioFiles(StaticFiles):
    """StaticFiles that asks browsers to revalidate, so a new release never runs stale modules."""

    async def get_response(self, path, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def mount_web(app: fastapi.FastAPI) -> None:
    """Serve the studio at ``/web/`` (``/web`` redirects there)."""
    if not (WEB_DIR / "index.html").is_file():
        raise RuntimeError(f"studio page missing: {WEB_DIR / 'index.html'}")

    @app.get(MOUNT_PATH, include_in_schema=False)
    async def _web_redirect(request: fastapi.Request) -> RedirectResponse:
        # Relative to the request so a path prefix added by a proxy survives.
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(url=f"{MOUNT_PATH.rsplit('/', 1)[-1]}/{query}", status_code=307)

    app.mount(MOUNT_PATH, _StudioFiles(directory=WEB_DIR, html=True), name="web")
