"""What every command carries from its HTTP request: who, from where, and its idempotency key."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from aiplatform.api.errors import RequestError
from aiplatform.commands import CommandContext
from aiplatform.eventstore.codec import EventMetadata

ANONYMOUS = "anonymous"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_HEADER_VALUE_LENGTH = 512


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Gives every request an id (the caller's `X-Request-ID` when sane) and echoes it back."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = (
            incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        )
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware


def _clip(value: str | None) -> str | None:
    return value[:MAX_HEADER_VALUE_LENGTH] if value else None


def event_metadata(request: Request[Any, Any, State], actor: str | None = None) -> EventMetadata:
    """The actor is the authenticated caller (or `actor` where the route names one, as login
    does before a token exists)."""
    principal = getattr(request.state, "principal", None)
    return EventMetadata(
        actor=actor or (principal.user_id if principal is not None else ANONYMOUS),
        client_ip=request.client.host if request.client else None,
        user_agent=_clip(request.headers.get("user-agent")),
        request_id=request.scope.get("state", {}).get("request_id"),
        correlation_id=_clip(request.headers.get("x-correlation-id")),
    )


def request_hash(request: Request[Any, Any, State], body: bytes) -> str:
    """Identifies a request so that a reused Idempotency-Key with another request is refused."""
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b" ")
    digest.update(request.url.path.encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


async def command_context(request: Request[Any, Any, State]) -> CommandContext:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise RequestError(
            f"Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
            field="Idempotency-Key",
        )
    metadata = event_metadata(request)
    if key is None:
        return CommandContext(metadata=metadata)
    body = await request.body()
    # Keys are scoped to the caller, so one caller cannot replay another's command.
    return CommandContext(
        metadata=metadata,
        idempotency_key=f"{metadata.actor}:{key}",
        request_hash=request_hash(request, body),
    )


def if_match_version(request: Request[Any, Any, State]) -> int | None:
    """`If-Match: 3` or `If-Match: "3"` (an ETag) pins the version the caller decided on."""
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise RequestError(
            f"If-Match must be a resource version (a whole number), got {raw!r}", field="If-Match"
        )
    return int(value)
