"""Counts every HTTP request by method, route template and status, and times it, for
`/metrics`. The route is the template (`/api/v2/projects/{project_id}`), never the
path, so ids do not make a series each."""

from __future__ import annotations

import time
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from aiplatform.observability.metrics import ApiMetrics


def request_metrics_middleware(metrics: ApiMetrics) -> Callable[[ASGIApp], ASGIApp]:
    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            # A response that never started (the client went away mid-request) counts as
            # the server's failure to answer.
            status = 500

            async def send_noting_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            metrics.in_flight.inc()
            try:
                await app(scope, receive, send_noting_status)
            finally:
                metrics.in_flight.dec()
                route = scope.get("path_template") or "unmatched"
                metrics.observe(scope["method"], route, status, time.perf_counter() - started)

        return middleware

    return wrap
