"""Puts a request's ids where every log line written while answering it finds them: the
request id the id middleware chose and the caller's correlation id, exactly as the request's
events record them in their metadata."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from aiplatform.api.context import MAX_HEADER_VALUE_LENGTH
from aiplatform.observability.logs import request_ids


def log_context_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            await app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        correlation = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1")
        with request_ids(request_id, correlation[:MAX_HEADER_VALUE_LENGTH] or None):
            await app(scope, receive, send)

    return middleware
