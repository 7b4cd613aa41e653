"""Every error leaves as an envelope with a machine-readable `meta.code` (API.md); bad input is
a 4xx that says what is wrong, never a 500 or a traceback."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_405_METHOD_NOT_ALLOWED,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from aiplatform.api.envelope import failure
from aiplatform.domain.errors import (
    AlreadyExistsError,
    DomainError,
    InvalidStateError,
    NotFoundError,
    StaleVersionError,
)
from aiplatform.eventstore.errors import ConcurrencyError, IdempotencyKeyReusedError

log = logging.getLogger(__name__)

_CODES = {
    HTTP_400_BAD_REQUEST: "validation_error",
    HTTP_401_UNAUTHORIZED: "not_authenticated",
    HTTP_403_FORBIDDEN: "forbidden",
    HTTP_404_NOT_FOUND: "not_found",
    HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    HTTP_409_CONFLICT: "conflict",
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
    HTTP_422_UNPROCESSABLE_ENTITY: "validation_error",
    HTTP_429_TOO_MANY_REQUESTS: "rate_limited",
    HTTP_503_SERVICE_UNAVAILABLE: "unavailable",
}


class RequestError(Exception):
    """Bad input found by a handler rather than by schema validation."""

    def __init__(self, message: str, field: str | None = None, status_code: int = 400):
        self.field = field
        self.status_code = status_code
        super().__init__(message)


def _respond(status_code: int, message: str, **meta: Any) -> Response[Any]:
    code = _CODES.get(status_code, "error" if status_code < 500 else "internal_error")
    headers = {"Retry-After": str(meta["retry_after"])} if "retry_after" in meta else None
    return Response(failure(message, code, **meta), status_code=status_code, headers=headers)


def _field_name(entry: dict[str, Any]) -> str | None:
    key = entry.get("key")
    if key:
        return str(key)
    # msgspec says where a nested value failed as "at `$.tags[0]`".
    message = str(entry.get("message", ""))
    if "at `$." in message:
        return message.split("at `$.", 1)[1].split("`", 1)[0]
    return None


def validation_exception_handler(
    _: Request[Any, Any, Any], exc: ValidationException
) -> Response[Any]:
    entries = exc.extra if isinstance(exc.extra, list) else []
    fields = [
        {
            "field": _field_name(entry),
            "message": entry.get("message"),
            "source": entry.get("source"),
        }
        for entry in entries
        if isinstance(entry, dict)
    ]
    detail = str(exc.detail)
    malformed = (
        any("malformed" in str(f["message"]).lower() for f in fields)
        or "malformed" in detail.lower()
    )
    # A request that cannot be read, or a bad query/path parameter, is a 400; a well-formed
    # body whose fields break the rules is a 422.
    in_body = any(f["source"] == "body" for f in fields)
    status = HTTP_422_UNPROCESSABLE_ENTITY if in_body and not malformed else HTTP_400_BAD_REQUEST
    if fields and all(f["field"] for f in fields):
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    elif fields:
        detail = "; ".join(str(f["message"]) for f in fields)
    return _respond(status, detail, fields=fields)


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return _respond(exc.status_code, str(exc.detail), **extra)


def request_error_handler(_: Request[Any, Any, Any], exc: RequestError) -> Response[Any]:
    fields = [{"field": exc.field, "message": str(exc)}] if exc.field else []
    return _respond(exc.status_code, str(exc), fields=fields)


def domain_error_handler(_: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    if isinstance(exc, NotFoundError):
        return _respond(HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, StaleVersionError):
        return _respond(HTTP_409_CONFLICT, str(exc), current_version=exc.current)
    if isinstance(exc, AlreadyExistsError | InvalidStateError):
        return _respond(HTTP_409_CONFLICT, str(exc))
    return _respond(HTTP_422_UNPROCESSABLE_ENTITY, str(exc))


def concurrency_error_handler(_: Request[Any, Any, Any], exc: ConcurrencyError) -> Response[Any]:
    return _respond(
        HTTP_409_CONFLICT,
        f"the resource changed while this request was decided; it is now at version "
        f"{exc.current_version}: reload it and retry",
        current_version=exc.current_version,
    )


def idempotency_error_handler(
    _: Request[Any, Any, Any], exc: IdempotencyKeyReusedError
) -> Response[Any]:
    return _respond(
        HTTP_422_UNPROCESSABLE_ENTITY,
        str(exc),
        fields=[{"field": "Idempotency-Key", "message": str(exc)}],
    )


def unavailable_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("dependency unavailable: %r", exc)
    return _respond(HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable; retry shortly")


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(
        HTTP_500_INTERNAL_SERVER_ERROR, "internal error; the request id identifies it in the logs"
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ValidationException: validation_exception_handler,
    HTTPException: http_exception_handler,
    RequestError: request_error_handler,
    DomainError: domain_error_handler,
    ConcurrencyError: concurrency_error_handler,
    IdempotencyKeyReusedError: idempotency_error_handler,
    asyncpg.exceptions.CannotConnectNowError: unavailable_handler,
    asyncpg.exceptions.ConnectionDoesNotExistError: unavailable_handler,
    asyncpg.exceptions.TooManyConnectionsError: unavailable_handler,
    ConnectionError: unavailable_handler,
    OSError: unavailable_handler,
    Exception: internal_error_handler,
}
