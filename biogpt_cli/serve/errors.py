"""Every failure of the server as OpenAI's error object `{"error": {"message", "type", "param",
"code"}}`, whatever raised it: a validation 400, 401, 404, 405, 408, 413, 429 with
Retry-After, 500, 503."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import EngineStopped, QueueFull, SamplingParams
from .schemas import error_body

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1  # 429: the queue drains at decode speed; a second is a fair first wait


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
             405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
             429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.TYPES.get(self.status, "invalid_request_error"), param=self.param, code=self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def timed_out(seconds: float) -> ApiError:
    """A request past `--request-timeout` (see Context.time_limit)."""
    return ApiError(408, f"The request took longer than the server's {seconds:g} s limit.", code="request_timeout")


def model_failed(error: str | None) -> ApiError:
    """A request whose generation the engine ended with "error"."""
    return ApiError(500, f"The model failed on this request: {error or 'engine error'}.", code="internal_error")


def engine_error(exc: BaseException) -> ApiError:
    """The engine's refusals as HTTP errors (ValueError: the request is wrong)."""
    if isinstance(exc, QueueFull):
        return ApiError(429, "The server's queue is full; retry later.", code="queue_full",
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(exc, EngineStopped):
        return ApiError(503, "The server is shutting down and accepts no new requests.", code="server_draining")
    if isinstance(exc, ValueError):
        return ApiError(400, str(exc), param=_param_named(str(exc)))
    logger.error("request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return ApiError(500, f"The model failed on this request ({type(exc).__name__}: {exc}).", code="internal_error")


def _param_named(message: str) -> str | None:
    """The option an engine ValueError names first (its messages start with the option)."""
    first = message.split(" ", 1)[0]
    return first if first in SamplingParams.__dataclass_fields__ else ("prompt" if "prompt" in message else None)


def validation_error(exc: RequestValidationError) -> ApiError:
    """pydantic's first complaint as a 400 naming the field (the count of the others appended)."""
    errors = exc.errors()
    if not errors:
        return ApiError(400, "Invalid request body.")
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    # a union's alternatives appear in loc as type names: keep the field path only
    path = [p for p in loc if not any(c in p for c in "[]") and p not in ("str", "int", "function-after")]
    param = path[0] if path else None
    if first.get("type") == "json_invalid":
        return ApiError(400, f"The body is not valid JSON: {first.get('msg')}.")
    where = ".".join(path) or "body"
    return ApiError(400, f"{where}: {first.get('msg')}" + (f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""),
                    param=param)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: f"No such endpoint: {request.method} {request.url.path}.",
                    405: f"Method {request.method} is not allowed on {request.url.path}."}
        error = ApiError(exc.status_code, messages.get(exc.status_code, str(exc.detail)), headers=dict(exc.headers or {}))
        return error.response()

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return engine_error(exc).response()
