"""Error types and the single handler that maps every error to ``{error, message, details}``."""

from __future__ import annotations

import logging
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


def error_body(error: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": error, "message": message, "details": details or {}}


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(error_body(exc.error, exc.message, exc.details), exc.status, headers=exc.headers)


_HTTP_NAMES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 401: "Unauthorized"}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", ""), "type": err.get("type")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_details(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        is_json = content_type == "application/json" or content_type.endswith("+json")  # as FastAPI does
        if not is_json and any(e["field"] == "body" for e in errors):
            got = content_type or "none"
            summary = f"the body must be JSON sent as Content-Type: application/json (got {got})"
        return JSONResponse(error_body("ValidationError", f"Invalid request: {summary}", {"errors": errors}), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = _HTTP_NAMES.get(exc.status_code, "HTTPError")
        message = exc.detail if isinstance(exc.detail, str) else name
        return JSONResponse(error_body(name, message), exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)  # set by RequestLog
        log.exception("unhandled error on %s %s", request.method, request.url.path,
                      extra={"request_id": request_id})
        message = "The server failed to process the request."
        # The server closes the connection after an unhandled error: say so, so clients do not reuse it.
        if request_id is None:
            return JSONResponse(error_body("InternalError", message), 500, headers={"Connection": "close"})
        body = error_body(
            "InternalError", f"{message} Quote request id {request_id}.", {"request_id": request_id}
        )
        return JSONResponse(body, 500, headers={"X-Request-ID": request_id, "Connection": "close"})
