"""Error types, the one error renderer and the handlers that use it.

Every error body comes from :func:`error_body`. Its shape depends on the route family:

- the OpenAI-compatible routes (``/v1/...``) answer as OpenAI does, ``{"error": {"message", "type",
  "param", "code"}}`` (what the OpenAI SDKs, Open WebUI and SillyTavern read), plus the top-level
  ``message`` and ``details``;
- every other route (``/synthesize*``, probes) keeps the deployment plan's ``{error, message, details}``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The service cannot start (no model, no voices, corrupt files). The message says what to do."""


class APIError(Exception):
    status = 400
    error = "BadRequest"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidRequest(APIError):
    error = "InvalidRequest"


class InvalidVoice(APIError):
    error = "InvalidVoice"


class UnsupportedLanguage(APIError):
    error = "UnsupportedLanguage"


class InputTooLong(APIError):
    error = "InputTooLong"


class SpeechTooLong(APIError):
    """The text would make more audio than its length allows (the documented ceiling, docs/api.md)."""

    error = "SpeechTooLong"


class TextTooComplex(APIError):
    """Phonemizing the text took longer than its deadline (KOKORO_G2P_DEADLINE_S)."""

    error = "TextTooComplex"


class NotFound(APIError):
    status = 404
    error = "NotFound"


class Unauthorized(APIError):
    status = 401
    error = "Unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Overloaded(APIError):
    status = 503
    error = "Overloaded"

    def __init__(self, message: str, retry_after: int = 1, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details)
        self.headers = {"Retry-After": str(retry_after)}


class NotReady(Overloaded):
    error = "NotReady"


class InsufficientStorage(APIError):
    status = 507
    error = "InsufficientStorage"


OPENAI_PREFIX = "/v1/"


def openai_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status code."""
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def openai_code(error: str) -> str:
    """``InvalidVoice`` -> ``invalid_voice`` (OpenAI's codes are snake_case)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", error).lower()


def _param(details: dict[str, Any]) -> str | None:
    field = details.get("field")
    if isinstance(field, str):
        return field
    errors = details.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0].get("field")
    return None


def error_body(
    error: str, message: str, details: dict[str, Any] | None = None, *, status: int = 400, path: str = ""
) -> dict[str, Any]:
    """The error body for a route: OpenAI's shape under ``/v1/``, the plan's ``{error, message, details}``
    elsewhere. ``error`` is the error's name (``InvalidVoice``); ``path`` the request path."""
    details = details or {}
    if not path.startswith(OPENAI_PREFIX):
        return {"error": error, "message": message, "details": details}
    return {
        "error": {
            "message": message,
            "type": openai_type(status),
            "param": _param(details),
            "code": openai_code(error),
        },
        "message": message,
        "details": details,
    }


def error_json(
    path: str, status: int, error: str, message: str, details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(error, message, details, status=status, path=path), status, headers=headers)


def error_bytes(path: str, status: int, error: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    """The body as bytes, for the pure-ASGI middlewares that answer before the app (401, 413)."""
    return json.dumps(error_body(error, message, details, status=status, path=path)).encode()


def error_response(exc: APIError, path: str = "") -> JSONResponse:
    return error_json(path, exc.status, exc.error, exc.message, exc.details, headers=exc.headers)


_HTTP_NAMES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 401: "Unauthorized"}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", ""), "type": err.get("type")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_details(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        is_json = content_type == "application/json" or content_type.endswith("+json")  # as FastAPI does
        if not is_json and any(e["field"] == "body" for e in errors):
            got = content_type or "none"
            summary = f"the body must be JSON sent as Content-Type: application/json (got {got})"
        return error_json(request.url.path, 400, "ValidationError", f"Invalid request: {summary}", {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = _HTTP_NAMES.get(exc.status_code, "HTTPError")
        message = exc.detail if isinstance(exc.detail, str) else name
        return error_json(request.url.path, exc.status_code, name, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)  # set by RequestLog
        log.exception("unhandled error on %s %s", request.method, request.url.path,
                      extra={"request_id": request_id})
        message = "The server failed to process the request."
        path = request.url.path
        # The server closes the connection after an unhandled error: say so, so clients do not reuse it.
        if request_id is None:
            return error_json(path, 500, "InternalError", message, headers={"Connection": "close"})
        return error_json(path, 500, "InternalError", f"{message} Quote request id {request_id}.",
                          {"request_id": request_id},
                          headers={"X-Request-ID": request_id, "Connection": "close"})
