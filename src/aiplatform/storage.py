"""The blob store: dataset files and model artifacts, in a local directory or in S3.

Uploads stream in constant memory: chunks are gathered into batches, and each batch is hashed and
written (and shown to the caller's observer) on threads while the event loop gathers the next
one. A blob appears whole or not at all: `put_stream` that raises (a client gone, a size limit, a
cancellation) leaves nothing behind.
Keys are made by the platform (`datasets/<uuid>/v1/<uuid>`); a user's file name is never one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import stat
import sys
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from io import BufferedWriter
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import boto3
import msgspec
from botocore.config import Config
from botocore.exceptions import ClientError

from aiplatform.config import Settings, SettingsError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 512
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
# Temp files live beside their blob; `~` cannot occur in a key, so no key ever names one.
_TEMP_SUFFIX = ".part~"
# A thread hop per batch, not per chunk, keeps the cost per byte of small chunks low.
LOCAL_BATCH_BYTES = 8 << 20
# Batches handed to the threads and not yet done, besides the one being gathered: the memory
# an upload holds is about (IN_FLIGHT_BATCHES + 1) batches.
IN_FLIGHT_BATCHES = 2
# S3 parts must be >= 5 MiB (but the last); at 8 MiB the 10,000-part limit allows 80 GiB blobs.
S3_PART_BYTES = 8 << 20


class BlobInfo(msgspec.Struct, frozen=True):
    key: str
    size: int
    sha256: str


class BlobTooLargeError(Exception):
    """The upload went past its limit; `limit` is that limit in bytes."""

    def __init__(self, limit: int) -> None:
        # The limit alone in args, so that the error survives pickling between processes.
        super().__init__(limit)
        self.limit = limit

    def __str__(self) -> str:
        return f"the upload exceeds the limit of {self.limit} bytes"


class BlobNotFoundError(LookupError):
    """No blob is stored under the key (the only argument)."""


# Sees an upload's bytes, in order, a chunk (as received) at a time, on a thread: what it does
# there should release the GIL, or it slows the event loop that receives the upload.
Observer = Callable[[bytes], None]


class BlobStore(Protocol):
    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        observe: Observer | None = None,
    ) -> BlobInfo: ...

    def open_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]: ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> None: ...

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]: ...

    async def exists(self, key: str) -> bool: ...


def validate_key(key: str) -> str:
    """Returns the key if it is one the platform could have made, else raises ValueError.

    Empty and `.` segments are refused too: the file system would fold `a//b` and `a/./b` into
    `a/b` while S3 would not, and one blob would have two keys."""
    segments = key.split("/")
    if len(key) > MAX_KEY_LENGTH or not all(
        _KEY_SEGMENT.fullmatch(segment) and segment not in (".", "..") for segment in segments
    ):
        raise ValueError(f"invalid blob key {key[:80]!r}")
    return key


class _Sink(Protocol):
    """Where an upload's batches go. Blocking; called on threads, one call at a time."""

    def write(self, batch: Sequence[bytes]) -> None: ...

    def commit(self) -> None: ...

    def discard(self) -> None:
        """Undoes whatever the upload did, a finished commit included."""


async def _batches(
    chunks: AsyncIterator[bytes], *, batch_bytes: int, max_bytes: int
) -> AsyncGenerator[list[bytes], None]:
    """The stream's chunks in batches of at least batch_bytes; only the last may be shorter.
    The chunks are not joined here: copying every byte once more on the event loop, which
    receives them, would slow the upload."""
    parts: list[bytes] = []
    buffered = total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise BlobTooLargeError(max_bytes)
        parts.append(chunk)
        buffered += len(chunk)
        if buffered >= batch_bytes:
            yield parts
            parts, buffered = [], 0
    if parts:
        yield parts


async def _settle(jobs: list[Future[None]]) -> None:
    for job in jobs:
        await asyncio.wrap_future(job)


def _discard_after(jobs: list[Future[None]], sink: _Sink) -> None:
    # A cancelled await leaves its thread running: removing the temp file (or aborting the
    # upload) under a write still in flight could leave a part behind.
    wait(jobs)
    sink.discard()


async def _pump(
    chunks: AsyncIterator[bytes],
    sink: _Sink,
    *,
    batch_bytes: int,
    max_bytes: int,
    observe: Observer | None,
) -> tuple[int, str]:
    """Streams chunks into sink and commits it; returns the size and the SHA-256 (hex).

    Two threads take the batches in order while the event loop gathers the next ones: one
    hashes, the other writes and observes. Hashing is the one job that cannot be split, so it
    gets a thread to itself; a thread per job made five busy threads on two cores, each waiting
    for the others. Up to IN_FLIGHT_BATCHES batches are handed over at a time, so that one
    thread held up for a moment does not stop the loop and the other thread."""
    hasher = hashlib.sha256()
    size = 0

    def hash_batch(batch: Sequence[bytes]) -> None:
        for chunk in batch:
            hasher.update(chunk)

    def store_batch(batch: Sequence[bytes]) -> None:
        sink.write(batch)
        if observe is not None:
            # Chunk by chunk: joining the batch first would copy every byte once more, into
            # memory that is fresh (page faults) each time.
            for chunk in batch:
                observe(chunk)

    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-hash")
    storing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-store")
    in_flight: deque[list[Future[None]]] = deque()
    try:
        async with aclosing(
            _batches(chunks, batch_bytes=batch_bytes, max_bytes=max_bytes)
        ) as batches:
            async for batch in batches:
                if len(in_flight) == IN_FLIGHT_BATCHES:
                    # Dropped once done: a discard must wait for every job still running.
                    await _settle(in_flight[0])
                    in_flight.popleft()
                in_flight.append(
                    [hashing.submit(hash_batch, batch), storing.submit(store_batch, batch)]
                )
                size += sum(map(len, batch))
        while in_flight:
            await _settle(in_flight[0])
            in_flight.popleft()
        in_flight.append([storing.submit(sink.commit)])
        await _settle(in_flight[0])
    except BaseException:
        await _discard([job for jobs in in_flight for job in jobs], sink)
        raise
    finally:
        hashing.shutdown(wait=False)
        storing.shutdown(wait=False)
    return size, hasher.hexdigest()


async def _discard(in_flight: list[Future[None]], sink: _Sink) -> None:
    # The caller's error is the one that matters; a failed cleanup is logged, not raised over it.
    try:
        await asyncio.to_thread(_discard_after, in_flight, sink)
    except Exception:
        log.exception("could not remove what a failed upload left behind")


# After each batch the file's pages are handed to the disk early: on Linux, DONTNEED starts the
# write-back of the dirty ones without waiting and drops those already written. The disk work
# spreads over the upload instead of piling up for the fsync, and an upload recycles a few
# batches' worth of page cache instead of pushing everything else's out (measured: about 2x
# faster for 200 MB than leaving it all to the fsync).
if sys.platform == "linux":

    def _hand_to_disk(fd: int) -> None:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

else:

    def _hand_to_disk(fd: int) -> None:
        pass


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable, not only the file's bytes.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _LocalUpload:
    """A temp file beside the blob's path, fsynced and renamed into place on commit.

    The file is made by the first write, on the upload's thread, so that a cancellation can
    never strand a file that the upload does not know about."""

    def __init__(self, final: Path) -> None:
        self._final = final
        self._temp: Path | None = None
        self._file: BufferedWriter | None = None
        self._committed = False

    def _open(self) -> BufferedWriter:
        if self._file is None:
            self._final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._final.parent, prefix=".", suffix=_TEMP_SUFFIX)
            self._temp = Path(name)
            self._file = os.fdopen(fd, "wb")
        return self._file

    def write(self, batch: Sequence[bytes]) -> None:
        file = self._open()
        file.writelines(batch)
        file.flush()
        _hand_to_disk(file.fileno())

    def commit(self) -> None:
        file = self._open()
        file.flush()
        os.fsync(file.fileno())
        file.close()
        assert self._temp is not None
        os.replace(self._temp, self._final)
        self._committed = True
        _fsync_directory(self._final.parent)

    def discard(self) -> None:
        # Close last: after a failed write, closing flushes again and may fail again.
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
        if self._committed:
            self._final.unlink(missing_ok=True)
        if self._file is not None:
            self._file.close()


def _file_size(path: Path) -> int | None:
    """The size of the regular file at path, or None where there is none."""
    try:
        status = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


class LocalBlobStore:
    """Blobs as files under root, at the path their key names."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._root = root

    def _path(self, key: str) -> Path:
        return self._root / validate_key(key)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        observe: Observer | None = None,
    ) -> BlobInfo:
        sink = _LocalUpload(self._path(key))
        size, sha256 = await _pump(
            chunks, sink, batch_bytes=LOCAL_BATCH_BYTES, max_bytes=max_bytes, observe=observe
        )
        return BlobInfo(key=key, size=size, sha256=sha256)

    async def open_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFoundError(key) from None
        # A buffered file's close waits on its lock for a read still running on a thread.
        with file:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk

    async def size(self, key: str) -> int:
        size = await asyncio.to_thread(_file_size, self._path(key))
        if size is None:
            raise BlobNotFoundError(key)
        return size

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """The blob's own file: readers must not change it."""
        path = self._path(key)
        if await asyncio.to_thread(_file_size, path) is None:
            raise BlobNotFoundError(key)
        yield path

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(_file_size, self._path(key)) is not None


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class _S3Upload:
    """A multipart upload, started by the first full part. A blob shorter than one part is
    sent whole by commit: a batch shorter than a part is always the last one."""

    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._short = b""
        self._committed = False

    def write(self, batch: Sequence[bytes]) -> None:
        body = b"".join(batch)
        if self._upload_id is None and len(body) < S3_PART_BYTES:
            self._short = body
            return
        if self._upload_id is None:
            started = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        part = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"ETag": part["ETag"], "PartNumber": number})

    def commit(self) -> None:
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=self._short)
        else:
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._committed = True

    def discard(self) -> None:
        if self._committed:
            self._client.delete_object(Bucket=self._bucket, Key=self._key)
        elif self._upload_id is not None:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )


class S3BlobStore:
    """Blobs as objects in bucket under prefix. boto3 blocks, so its calls run on threads."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        prefix = prefix.strip("/")
        self._client = client
        self._bucket = bucket
        self._prefix = validate_key(prefix) + "/" if prefix else ""

    def _object_key(self, key: str) -> str:
        return self._prefix + validate_key(key)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        observe: Observer | None = None,
    ) -> BlobInfo:
        sink = _S3Upload(self._client, self._bucket, self._object_key(key))
        size, sha256 = await _pump(
            chunks, sink, batch_bytes=S3_PART_BYTES, max_bytes=max_bytes, observe=observe
        )
        return BlobInfo(key=key, size=size, sha256=sha256)

    async def open_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        try:
            response = await asyncio.to_thread(
                self._client.get_object, Bucket=self._bucket, Key=self._object_key(key)
            )
        except ClientError as error:
            if _is_missing(error):
                raise BlobNotFoundError(key) from None
            raise
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def _head(self, key: str) -> int | None:
        """The object's size, or None where there is no object."""
        try:
            head = await asyncio.to_thread(
                self._client.head_object, Bucket=self._bucket, Key=self._object_key(key)
            )
        except ClientError as error:
            if _is_missing(error):
                return None
            raise
        return head["ContentLength"]

    async def size(self, key: str) -> int:
        size = await self._head(key)
        if size is None:
            raise BlobNotFoundError(key)
        return size

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(
            self._client.delete_object, Bucket=self._bucket, Key=self._object_key(key)
        )

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """A temp download of the blob (under TMPDIR), removed on exit."""
        object_key = self._object_key(key)
        fd, name = tempfile.mkstemp(prefix="aiplatform-blob-")
        os.close(fd)
        path = Path(name)
        # One thread for the download and the removal: a cancelled download goes on running,
        # and the removal must come after it, not before it writes the file again.
        serial = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-copy")
        try:
            await asyncio.wrap_future(serial.submit(self._download, object_key, path, key))
            yield path
        finally:
            removed = serial.submit(path.unlink, missing_ok=True)
            serial.shutdown(wait=False)
            await asyncio.wrap_future(removed)

    def _download(self, object_key: str, path: Path, key: str) -> None:
        try:
            self._client.download_file(self._bucket, object_key, str(path))
        except ClientError as error:
            if _is_missing(error):
                raise BlobNotFoundError(key) from None
            raise

    async def exists(self, key: str) -> bool:
        return await self._head(key) is not None


def s3_client(env: Mapping[str, str]) -> S3Client:
    """An S3 client with the standard AWS credentials, read from env, and the endpoint of an
    S3-compatible server from AIPLATFORM_S3_ENDPOINT_URL if it is set."""
    endpoint_url = env.get("AIPLATFORM_S3_ENDPOINT_URL") or None
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
    )
    config = None
    if endpoint_url:
        # S3-compatible servers commonly want path-style URLs and reject the checksum headers
        # that botocore adds to every upload by default.
        config = Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def blob_store_from_settings(settings: Settings, env: Mapping[str, str] | None = None) -> BlobStore:
    """S3 where AIPLATFORM_STORAGE is `s3://bucket/prefix`, else a local directory: the one it
    names, or `<data_dir>/blobs` where it is unset."""
    env = os.environ if env is None else env
    storage = settings.storage
    if storage and storage.startswith("s3://"):
        bucket, _, prefix = storage.removeprefix("s3://").partition("/")
        if not bucket:
            raise SettingsError("AIPLATFORM_STORAGE names no bucket: s3://bucket/prefix")
        return S3BlobStore(s3_client(env), bucket, prefix)
    if storage and "://" in storage:
        raise SettingsError("AIPLATFORM_STORAGE must be a directory or an s3://bucket/prefix URL")
    root = Path(storage).expanduser() if storage else settings.data_dir / "blobs"
    return LocalBlobStore(root)
