"""The response of a write: the resource with its version (also as ETag) and the position a
later read can pass as `after` to see the write."""

from __future__ import annotations

from typing import Any

from litestar import Response

from aiplatform.api.envelope import ok
from aiplatform.commands import CommandResult


def write_response(result: CommandResult[Any], data: Any, status_code: int = 200) -> Response[Any]:
    headers = {"ETag": f'"{result.stream_version}"'}
    meta: dict[str, Any] = {"version": result.stream_version, "replayed": result.duplicate}
    if result.position is not None:
        headers["X-Event-Position"] = str(result.position)
        meta["position"] = result.position
    return Response(ok(data, meta), status_code=status_code, headers=headers)
