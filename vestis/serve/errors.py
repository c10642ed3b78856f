"""Library exceptions -> HTTP answers, all OpenAI-shaped (``{"error": {"message", "type", "param",
"code"}}``). The status follows the exception's type, never its message."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vestis.errors import ConflictError, ImageError, InputError, ModelNotFoundError, UnavailableError, VestisError
from vestis.serve.batching import Overloaded
from vestis.serve.media import ImageTooLarge
from vestis.serve.security import error_body
from vestis.serve.state import ApiError

log = logging.getLogger("vestis.serve")

_STATUS_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("conflict_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("server_error", "overloaded"),
}

#: Library exception -> (status, type, code, param, headers); the most specific class first.
_LIBRARY_ERRORS: list[tuple[type[Exception], int, str, str, str | None, dict | None]] = [
    (Overloaded, 503, "server_error", "overloaded", None, {"Retry-After": "1"}),
    (ImageTooLarge, 413, "invalid_request_error", "image_too_large", None, None),
    (ImageError, 400, "invalid_request_error", "invalid_image", None, None),
    (ModelNotFoundError, 404, "invalid_request_error", "model_not_found", "model", None),
    (ConflictError, 409, "conflict_error", "catalog_busy", None, {"Retry-After": "1"}),
    (UnavailableError, 503, "server_error", "store_unavailable", None, {"Retry-After": "5"}),
    (InputError, 400, "invalid_request_error", "invalid_request", None, None),
]


def error_response(status: int, message: str, type_: str, code=None, param=None, headers=None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, code, param), status_code=status, headers=headers)


def validation_message(errors: Sequence[dict]) -> tuple[str, str | None]:
    """pydantic's errors as one sentence naming the first bad field (and how many more there are)."""
    first = errors[0] if errors else {}
    param = ""
    for part in first.get("loc", ()):
        if isinstance(part, int):
            param += f"[{part}]"
        elif part != "body" and not any(c in str(part) for c in "[(,"):  # not a union member's tag
            param += f".{part}" if param else str(part)
    param = param or None
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})", None
    msg = first.get("msg", "invalid request")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{param}: {msg}" if param else msg) + more, param


async def _api_error(request: Request, exc: ApiError):
    return error_response(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)


async def _validation(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    message, param = validation_message(errors)
    code = "invalid_json" if errors and errors[0].get("type") == "json_invalid" else "invalid_request"
    return error_response(400, message, "invalid_request_error", code, param)


async def _http(request: Request, exc: StarletteHTTPException):
    type_, code = _STATUS_TYPES.get(exc.status_code, ("invalid_request_error", None))
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 400 and detail.startswith("There was an error parsing the body"):
        detail, code = "the body is not valid JSON (unreadable, or nested too deeply)", "invalid_json"
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:  # Allow: every method of every route at this path, not only the first one's
        allowed = allowed_methods(request)
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        detail = f"{request.method} is not allowed at {request.url.path}; allowed: {', '.join(allowed)}"
    return error_response(exc.status_code, detail, type_, code, None, headers)


def allowed_methods(request: Request) -> list[str]:
    """The methods the app's routes answer at the request's path."""
    methods: set[str] = set()
    for route in getattr(request.app.state.vestis.metrics, "routes", ()):
        regex, allowed = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and allowed and regex.match(request.url.path):
            methods |= set(allowed)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _library(request: Request, exc: VestisError):
    for kind, status, type_, code, param, headers in _LIBRARY_ERRORS:
        if isinstance(exc, kind):
            return error_response(status, str(exc), type_, code, param, headers)
    log.error("request %s %s failed: %s", request.method, request.url.path, exc)
    return error_response(500, str(exc), "server_error", "server_error")


async def _unexpected(request: Request, exc: Exception):
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response(500, "internal server error; the details are in the server's log", "server_error",
                          "internal_error")  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(VestisError, _library)
    app.add_exception_handler(Exception, _unexpected)
