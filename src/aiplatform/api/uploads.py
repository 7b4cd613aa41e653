"""Multipart uploads streamed straight into the blob store, in constant memory.

Litestar's own multipart support reads the whole body first; a dataset can be gigabytes. Here
the request body is pushed through an incremental multipart parser: the `file` part's bytes go
to the blob store as they arrive (the store pulls them, so the body is read no faster than it is
stored), the other parts are small form fields kept in memory. The client's file name is kept
for display only and is never used as a path.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from litestar import Request
from litestar.datastructures import State
from python_multipart.multipart import MultipartParser, parse_options_header

from aiplatform.api.errors import RequestError
from aiplatform.storage import BlobInfo, BlobStore, Observer

if TYPE_CHECKING:  # the library declares its callback type for type checkers only
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 20
HEAD_BYTES = 64 * 1024


@dataclass
class Upload:
    fields: dict[str, str]
    blob: BlobInfo
    filename: str
    head: bytes  # the file's first bytes, to detect its format from content


@dataclass
class _Parts:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str = ""
    seen_file: bool = False
    head: bytearray = field(default_factory=bytearray)
    pending: list[bytes] = field(default_factory=list)
    current_name: str | None = None
    current_is_file: bool = False
    current_value: bytearray = field(default_factory=bytearray)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None


def display_filename(raw: str) -> str:
    """What the client called the file, made safe to show: no path, no control characters,
    at most 255 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    return name.strip()[:255] or "upload"


def _callbacks(parts: _Parts) -> MultipartCallbacks:
    def on_part_begin() -> None:
        parts.headers = {}
        parts.current_value = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        parts.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        parts.header_value += data[start:end]

    def on_header_end() -> None:
        parts.headers[parts.header_field.decode("latin-1").lower()] = bytes(parts.header_value)
        parts.header_field = bytearray()
        parts.header_value = bytearray()

    def on_headers_finished() -> None:
        _, options = parse_options_header(parts.headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        parts.current_name = name
        parts.current_is_file = name == FILE_FIELD
        if parts.current_is_file:
            if parts.seen_file:
                parts.error = "send one `file` part only"
            parts.seen_file = True
            parts.filename = display_filename(
                options.get(b"filename", b"").decode("utf-8", "replace")
            )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        if parts.current_is_file:
            if len(parts.head) < HEAD_BYTES:
                parts.head += piece[: HEAD_BYTES - len(parts.head)]
            parts.pending.append(bytes(piece))
        else:
            parts.current_value += piece
            if len(parts.current_value) > MAX_FIELD_BYTES:
                parts.error = f"form field `{parts.current_name}` is over {MAX_FIELD_BYTES} bytes"

    def on_part_end() -> None:
        if not parts.current_is_file and parts.current_name:
            if len(parts.fields) >= MAX_FIELDS:
                parts.error = f"at most {MAX_FIELDS} form fields"
            parts.fields[parts.current_name] = parts.current_value.decode("utf-8", "replace")
        parts.current_name = None
        parts.current_is_file = False

    return cast(
        "MultipartCallbacks",
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )


def _boundary(request: Request[Any, Any, State]) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise RequestError(
            "send the file as multipart/form-data with a `file` part", field=FILE_FIELD
        )
    return boundary


async def receive_upload(
    request: Request[Any, Any, State],
    store: BlobStore,
    key: str,
    max_bytes: int,
    observe: Observer | None = None,
) -> Upload:
    """Streams the request's `file` part into `store` under `key`. Raises RequestError for a
    malformed request (and leaves nothing stored); the store raises BlobTooLargeError past
    `max_bytes`. `observe` sees the file's bytes on the store's threads (to count rows, say)."""
    parts = _Parts()
    parser = MultipartParser(_boundary(request), _callbacks(parts))

    async def file_chunks() -> AsyncIterator[bytes]:
        # Pulled by the store, so the body is read no faster than the store takes it. An error
        # (a cut-off upload, a malformed body) goes through the store, which discards the blob.
        async for chunk in request.stream():
            parser.write(chunk)
            if parts.error:
                raise RequestError(parts.error)
            pending, parts.pending = parts.pending, []
            for piece in pending:
                yield piece
        parser.finalize()

    blob = await store.put_stream(key, file_chunks(), max_bytes=max_bytes, observe=observe)
    if not parts.seen_file:
        await store.delete(key)
        raise RequestError("the upload has no `file` part", field=FILE_FIELD)
    return Upload(fields=parts.fields, blob=blob, filename=parts.filename, head=bytes(parts.head))
