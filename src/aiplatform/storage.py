"""The blob store: dataset files and model artifacts, in a local directory or in S3.

Uploads stream in constant memory: chunks are copied into batch buffers, used in turn, and each
batch is hashed and written (and shown to the caller's observer) on threads while the event loop
gathers the next one. A blob appears whole or not at all: `put_stream` that raises (a client
gone, a size limit, a cancellation) leaves nothing behind.
Keys are made by the platform (`datasets/<uuid>/v1/<uuid>`); a user's file name is never one.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import mmap
import os
import re
import stat
import sys
import tempfile
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
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


# Sees an upload's bytes, in order, a batch at a time, on a thread: what it does there should
# release the GIL, or it slows the event loop that receives the upload. The view is valid only
# during the call: its buffer is filled again with a later batch.
Observer = Callable[[memoryview], None]


class BlobStore(Protocol):
    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes | memoryview],
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
    """Where an upload's batches go. Blocking; called on threads, one call at a time. A batch
    is valid only during the call that gets it."""

    def write(self, batch: memoryview) -> None: ...

    def commit(self) -> None: ...

    def discard(self) -> None:
        """Undoes whatever the upload did, a finished commit included."""


class _BufferPool:
    """Batch buffers kept between uploads, up to one upload's worth. Anonymous maps:
    page-aligned, as direct I/O wants them, and taking memory only for the pages an upload
    fills. A fresh one has the kernel map and zero every page as it is first filled (2,048
    page faults per 8 MiB buffer, 6,150 per upload measured), so they are reused. Locked:
    a worker's actors upload from event loops of their own, on their own threads."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._free: dict[int, list[mmap.mmap]] = {}
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            free = self._free.get(size)
            if free:
                return free.pop()
        return mmap.mmap(-1, size)

    def give_back(self, buffers: list[mmap.mmap]) -> None:
        with self._lock:
            for buffer in buffers:
                free = self._free.setdefault(len(buffer), [])
                if len(free) < self._keep:
                    free.append(buffer)


_BUFFERS = _BufferPool(keep=IN_FLIGHT_BATCHES + 1)


async def _batches(
    chunks: AsyncIterator[bytes | memoryview],
    buffers: list[mmap.mmap],
    *,
    batch_bytes: int,
    max_bytes: int,
) -> AsyncGenerator[memoryview, None]:
    """The stream's bytes in batches of batch_bytes; only the last may be shorter.

    Each chunk is copied into the buffers, used in turn, and each batch is a view of one of
    them: a batch's bytes are contiguous, so a thread hashes or writes all of them in one call
    that releases the GIL once (a call per chunk had the thread wait for the GIL, held by the
    event loop, after each), and memory is reused rather than gathered anew. The buffers are
    taken from the pool as needed, up to IN_FLIGHT_BATCHES + 1, and listed in `buffers`; each
    is filled again only IN_FLIGHT_BATCHES batches later: the caller must be done with a batch
    by then."""
    buffers.append(_BUFFERS.take(batch_bytes))
    buffer, filled, total, count = buffers[0], 0, 0, 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise BlobTooLargeError(max_bytes)
        rest = memoryview(chunk)
        while rest:
            piece = rest[: batch_bytes - filled]
            buffer[filled : filled + len(piece)] = piece
            filled += len(piece)
            rest = rest[len(piece) :]
            if filled == batch_bytes:
                yield memoryview(buffer)
                count += 1
                if len(buffers) <= IN_FLIGHT_BATCHES:
                    buffers.append(_BUFFERS.take(batch_bytes))
                buffer, filled = buffers[count % len(buffers)], 0
    if filled:
        yield memoryview(buffer)[:filled]


async def _settle(jobs: list[Future[None]]) -> None:
    for job in jobs:
        await asyncio.wrap_future(job)


def _discard_after(jobs: list[Future[None]], sink: _Sink) -> None:
    # A cancelled await leaves its thread running: removing the temp file (or aborting the
    # upload) under a write still in flight could leave a part behind.
    wait(jobs)
    sink.discard()


async def _pump(
    chunks: AsyncIterator[bytes | memoryview],
    sink: _Sink,
    *,
    batch_bytes: int,
    max_bytes: int,
    observe: Observer | None,
) -> tuple[int, str]:
    """Streams chunks into sink and commits it; returns the size and the SHA-256 (hex).

    Two threads take the batches in order while the event loop gathers the next ones: one
    hashes, the other writes and then observes (the disk does the writing: direct I/O leaves
    the thread idle meanwhile). Hashing is the one job that cannot be split, so it gets a thread
    to itself; a thread per job made five busy threads on two cores, each waiting for the
    others. Up to IN_FLIGHT_BATCHES batches are handed over at a time, so that one
    thread held up for a moment does not stop the loop and the other thread."""
    hasher = hashlib.sha256()
    size = 0

    def store_batch(batch: memoryview) -> None:
        sink.write(batch)
        if observe is not None:
            observe(batch)

    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-hash")
    storing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-store")
    in_flight: deque[list[Future[None]]] = deque()
    # One buffer per batch in flight and one being filled: a batch's jobs are settled before
    # its buffer comes round again.
    buffers: list[mmap.mmap] = []
    try:
        gathered = _batches(chunks, buffers, batch_bytes=batch_bytes, max_bytes=max_bytes)
        async with aclosing(gathered) as batches:
            async for batch in batches:
                if len(in_flight) == IN_FLIGHT_BATCHES:
                    # Dropped once done: a discard must wait for every job still running.
                    await _settle(in_flight[0])
                    in_flight.popleft()
                in_flight.append(
                    [hashing.submit(hasher.update, batch), storing.submit(store_batch, batch)]
                )
                size += len(batch)
        while in_flight:
            await _settle(in_flight[0])
            in_flight.popleft()
        in_flight.append([storing.submit(sink.commit)])
        await _settle(in_flight[0])
        # Only now: every job is done with them. After a failure they are left to the
        # collector, as a job may still be running.
        _BUFFERS.give_back(buffers)
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


# Where the file system allows it, batches are written with direct I/O: the disk reads them
# from the batch's buffer, and the CPU copies nothing into the page cache and writes nothing
# back from it (measured on 256 MiB, the write calls alone: 0.01 s of CPU against 0.08-0.15 s
# buffered, in less time).
# Direct I/O wants the memory, the length and the file offset aligned to the disk's blocks:
# the buffers are page-aligned and full batches a multiple of the page size.
_DIRECT_IO_ALIGNMENT = mmap.PAGESIZE


def _set_direct_io(fd: int, on: bool) -> bool:
    """Turns direct I/O on or off for fd; False where the platform or file system refuses."""
    if sys.platform != "linux":
        return False
    import fcntl

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return True


# Buffered, after each batch the file's pages are handed to the disk early: on Linux, DONTNEED
# starts the write-back of the dirty ones without waiting and drops those already written.
# The disk work spreads over the upload instead of piling up for the fsync, and an upload
# recycles a few batches' worth of page cache instead of pushing everything else's out
# (measured: about 2x faster for 200 MB than leaving it all to the fsync).
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
    never strand a file that the upload does not know about. It is written with direct I/O
    while the file system takes it; a batch it refuses, and the short last one, are written
    buffered, and so is everything after them."""

    def __init__(self, final: Path) -> None:
        self._final = final
        self._temp: Path | None = None
        self._fd: int | None = None
        self._direct = False
        self._committed = False

    def _open(self) -> int:
        if self._fd is None:
            self._final.parent.mkdir(parents=True, exist_ok=True)
            self._fd, name = tempfile.mkstemp(
                dir=self._final.parent, prefix=".", suffix=_TEMP_SUFFIX
            )
            self._temp = Path(name)
            self._direct = _set_direct_io(self._fd, True)
        return self._fd

    def _end_direct_io(self, fd: int) -> None:
        if self._direct:
            self._direct = not _set_direct_io(fd, False)
            if self._direct:
                raise OSError(errno.EINVAL, "cannot turn direct I/O off for an upload")

    def _write_all(self, fd: int, data: memoryview) -> None:
        while data:
            try:
                written = os.write(fd, data)
            except OSError as error:
                # The file system refuses direct I/O for this memory or length after all.
                if error.errno != errno.EINVAL or not self._direct:
                    raise
                self._end_direct_io(fd)
                continue
            data = data[written:]

    def write(self, batch: memoryview) -> None:
        fd = self._open()
        if self._direct and len(batch) % _DIRECT_IO_ALIGNMENT:
            aligned = len(batch) - len(batch) % _DIRECT_IO_ALIGNMENT
            self._write_all(fd, batch[:aligned])
            self._end_direct_io(fd)
            batch = batch[aligned:]
        self._write_all(fd, batch)
        if not self._direct:
            _hand_to_disk(fd)

    def commit(self) -> None:
        fd = self._open()
        os.fsync(fd)
        self._fd = None
        os.close(fd)
        assert self._temp is not None
        os.replace(self._temp, self._final)
        self._committed = True
        _fsync_directory(self._final.parent)

    def discard(self) -> None:
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
        if self._committed:
            self._final.unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
        chunks: AsyncIterator[bytes | memoryview],
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

    def write(self, batch: memoryview) -> None:
        body = bytes(batch)
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
        chunks: AsyncIterator[bytes | memoryview],
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
