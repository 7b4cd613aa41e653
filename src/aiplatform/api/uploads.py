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
from typing import Any

from litestar import Request
from litestar.datastructures import State
from python_multipart.multipart import parse_options_header

from aiplatform.api.errors import RequestError
from aiplatform.api.multipart import PART_END, MultipartError, MultipartReader, PartStart
from aiplatform.storage import BlobInfo, BlobStore, Observer

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
class _Form:
    """The form as its parts arrive: the fields so far, and what is known of the file."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str = ""
    seen_file: bool = False
    head: bytearray = field(default_factory=bytearray)
    part: PartStart | None = None
    value: bytearray = field(default_factory=bytearray)

    def begin(self, part: PartStart) -> None:
        self.part = part
        self.value = bytearray()
        if part.name == FILE_FIELD:
            if self.seen_file:
                raise RequestError("send one `file` part only")
            self.seen_file = True
            self.filename = display_filename(part.filename or "")

    def field_data(self, data: bytes | memoryview) -> None:
        self.value += data
        if len(self.value) > MAX_FIELD_BYTES:
            raise RequestError(f"form field `{self.part_name}` is over {MAX_FIELD_BYTES} bytes")

    def end(self) -> None:
        if self.part is not None and self.part.name != FILE_FIELD and self.part.name:
            if len(self.fields) >= MAX_FIELDS:
                raise RequestError(f"at most {MAX_FIELDS} form fields")
            self.fields[self.part.name] = self.value.decode("utf-8", "replace")
        self.part = None

    @property
    def in_file(self) -> bool:
        return self.part is not None and self.part.name == FILE_FIELD

    @property
    def part_name(self) -> str:
        return self.part.name if self.part is not None else ""


def display_filename(raw: str) -> str:
    """What the client called the file, made safe to show: no path, no control characters,
    at most 255 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    return name.strip()[:255] or "upload"


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
    form = _Form()
    reader = MultipartReader(_boundary(request))

    async def file_chunks() -> AsyncIterator[bytes | memoryview]:
        # Pulled by the store, so the body is read no faster than the store takes it. An error
        # (a cut-off upload, a malformed body) goes through the store, which discards the blob.
        # The file's data are views of the received chunks, copied once, by the store.
        async for chunk in request.stream():
            try:
                events = reader.feed(chunk)
            except MultipartError as error:
                raise RequestError(str(error)) from None
            for event in events:
                if isinstance(event, PartStart):
                    form.begin(event)
                elif event is PART_END:
                    form.end()
                elif form.in_file:
                    if len(form.head) < HEAD_BYTES:
                        form.head += event[: HEAD_BYTES - len(form.head)]
                    yield event
                else:
                    form.field_data(event)
        if not reader.finished:
            raise RequestError("the body ends before the closing boundary of its parts")

    blob = await store.put_stream(key, file_chunks(), max_bytes=max_bytes, observe=observe)
    if not form.seen_file:
        await store.delete(key)
        raise RequestError("the upload has no `file` part", field=FILE_FIELD)
    return Upload(fields=form.fields, blob=blob, filename=form.filename, head=bytes(form.head))
