"""The response envelope of API.md: `{success, data, error, meta}`."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar.params import QueryParameter

T = TypeVar("T")
# The query parameters of a paginated list.
Page = Annotated[int, QueryParameter(ge=1, description="page number, from 1")]
Limit = Annotated[int, QueryParameter(ge=1, le=100, description="items per page, 1-100")]
# Read-your-writes: a write's `meta.position`; the read waits until it includes that write.
After = Annotated[
    int | None,
    QueryParameter(
        ge=0, required=False, description="a write's event position: wait until it is readable"
    ),
]


class PageMeta(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    page: int
    limit: int
    has_more: bool


class Envelope(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    success: bool
    data: T | None = None
    error: str | None = None
    meta: dict[str, Any] | None = None


def ok(data: T, meta: dict[str, Any] | None = None) -> Envelope[T]:
    return Envelope(success=True, data=data, meta=meta)


def paginated(items: list[T], *, total: int, page: int, limit: int) -> Envelope[list[T]]:
    meta = PageMeta(total=total, page=page, limit=limit, has_more=page * limit < total)
    return Envelope(success=True, data=items, meta=msgspec.structs.asdict(meta))


def failure(message: str, code: str, **meta: Any) -> Envelope[None]:
    return Envelope(success=False, error=message, meta={"code": code, **meta})
