"""The blob store: one suite run against the local store and against S3 (moto's server, a real
S3-compatible HTTP server on a local port); memory and throughput of local uploads."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import mmap
import os
import pickle
import random
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from aiplatform.config import Settings, SettingsError
from aiplatform.storage import (
    IN_FLIGHT_BATCHES,
    BlobNotFoundError,
    BlobStore,
    BlobTooLargeError,
    LocalBlobStore,
    S3BlobStore,
    _LocalUpload,
    blob_store_from_settings,
    s3_client,
)

MiB = 1 << 20
BUCKET = "aiplatform-test"
ODD_SIZES = (1, 7_919, 65_537, 1_048_573, 3, 333_333)
BAD_KEYS = ("../x", "a/../b", "/abs", "a\x00b", "k" * 600, "with space", "a//b", "a/", "", ".")


@dataclass
class Backend:
    store: BlobStore
    # What is stored, finished or not: files (temp files included), objects, open uploads.
    leftovers: Callable[[], list[str]]


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def chunks_of(data: bytes, sizes: tuple[int, ...] = ODD_SIZES) -> AsyncIterator[bytes]:
    offset = 0
    for index in range(len(data)):
        if offset >= len(data):
            return
        size = sizes[index % len(sizes)]
        yield data[offset : offset + size]
        offset += size


async def read_all(store: BlobStore, key: str, chunk_size: int = 1 << 20) -> bytes:
    return b"".join([chunk async for chunk in store.open_stream(key, chunk_size=chunk_size)])


def new_key() -> str:
    return f"datasets/{uuid.uuid4()}/v1/{uuid.uuid4()}"


@pytest.fixture(scope="session")
def s3_env() -> Iterator[dict[str, str]]:
    """The environment the S3 store is made from: the local server and fake credentials, in
    this mapping only, never in the process's environment."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AIPLATFORM_S3_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3_client(env).create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


def local_backend(root: Path) -> Backend:
    store = blob_store_from_settings(Settings(storage=str(root)), env={})
    return Backend(store, lambda: sorted(str(p) for p in root.rglob("*") if not p.is_dir()))


def s3_backend(env: dict[str, str]) -> Backend:
    prefix = f"run-{uuid.uuid4()}"
    store = blob_store_from_settings(Settings(storage=f"s3://{BUCKET}/{prefix}/"), env)
    client = s3_client(env)

    def leftovers() -> list[str]:
        objects = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        return [o["Key"] for o in objects] + [
            f"upload {u['Key']}" for u in uploads if u["Key"].startswith(prefix)
        ]

    return Backend(store, leftovers)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return local_backend(tmp_path / "blobs")
    return s3_backend(request.getfixturevalue("s3_env"))


async def test_round_trip_in_odd_chunks(backend: Backend) -> None:
    store, key = backend.store, new_key()
    data = payload(19 * MiB + 12_345)  # three S3 parts, the last one short
    info = await store.put_stream(key, chunks_of(data), max_bytes=len(data))
    assert info.key == key
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.exists(key)
    assert await store.size(key) == len(data)
    assert await read_all(store, key) == data
    assert await read_all(store, key, chunk_size=100_003) == data


async def test_small_blob(backend: Backend) -> None:
    store, key = backend.store, new_key()
    info = await store.put_stream(key, chunks_of(b"hello, world"), max_bytes=100)
    assert (info.size, await read_all(store, key)) == (12, b"hello, world")


async def test_empty_stream(backend: Backend) -> None:
    store, key = backend.store, new_key()
    info = await store.put_stream(key, chunks_of(b""), max_bytes=10)
    assert (info.size, info.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert await store.exists(key)
    assert await store.size(key) == 0
    assert await read_all(store, key) == b""


async def test_too_large_stops_reading_and_leaves_nothing(backend: Backend) -> None:
    store, key = backend.store, new_key()
    data = payload(30 * MiB)
    pulled = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal pulled
        async for chunk in chunks_of(data):
            pulled += len(chunk)
            yield chunk

    limit = 17 * MiB  # past the first two S3 parts: a multipart upload is open
    with pytest.raises(BlobTooLargeError) as raised:
        await store.put_stream(key, counted(), max_bytes=limit)
    assert raised.value.limit == limit
    assert pulled <= limit + max(ODD_SIZES)
    assert backend.leftovers() == []
    assert not await store.exists(key)


async def part_stored(backend: Backend) -> None:
    """Waits until the threads that store the batches handed to them have stored some."""
    deadline = time.monotonic() + 10
    while backend.leftovers() == []:
        assert time.monotonic() < deadline, "nothing of the blob was stored"
        await asyncio.sleep(0.01)


async def test_stream_failing_midway_leaves_nothing(backend: Backend) -> None:
    store, key = backend.store, new_key()

    async def failing() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(payload(17 * MiB)):
            yield chunk
        # The failure must come while part of the blob is stored, or the test proves nothing.
        await part_stored(backend)
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError, match="went away"):
        await store.put_stream(key, failing(), max_bytes=100 * MiB)
    assert backend.leftovers() == []
    assert not await store.exists(key)


async def test_cancelled_upload_leaves_nothing(backend: Backend) -> None:
    store, key = backend.store, new_key()
    stalled = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(payload(17 * MiB)):
            yield chunk
        stalled.set()
        await asyncio.Event().wait()
        yield b"never"

    upload = asyncio.create_task(store.put_stream(key, stalling(), max_bytes=100 * MiB))
    await stalled.wait()
    await part_stored(backend)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert backend.leftovers() == []


async def test_the_observer_sees_every_byte_in_order_from_a_few_reused_buffers(
    backend: Backend,
) -> None:
    # An upload's bytes are copied once, into batch buffers used in turn: gathering fresh
    # memory for every batch had the kernel map and zero it again and again, and a batch of
    # separate chunks made the store's threads wait for the GIL after each chunk.
    store, key = backend.store, new_key()
    data = payload(41 * MiB)
    seen: list[bytes] = []
    buffers: set[int] = set()

    def observe(batch: memoryview) -> None:
        seen.append(bytes(batch))
        buffers.add(id(batch.obj))

    info = await store.put_stream(key, chunks_of(data), max_bytes=100 * MiB, observe=observe)

    assert b"".join(seen) == data
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(store, key) == data
    # 8 MiB batches, each contiguous: the last one is the only short one.
    assert [len(batch) for batch in seen] == [8 * MiB] * 5 + [MiB]
    assert len(buffers) == IN_FLIGHT_BATCHES + 1


@pytest.mark.skipif(sys.platform != "linux", reason="direct I/O as Linux has it")
def test_full_batches_are_written_with_direct_io(tmp_path: Path) -> None:
    # Buffered, the CPU copied every byte into the page cache and wrote it back from there:
    # 0.13 s per 256 MiB against 0.015 s direct, on a thread beside the upload's hashing.
    if not _direct_io_allowed(tmp_path):
        pytest.skip("this file system refuses direct I/O")
    upload = _LocalUpload(tmp_path / "blob")
    buffer = mmap.mmap(-1, 2 * MiB)
    buffer[:] = payload(2 * MiB)
    upload.write(memoryview(buffer))
    assert upload._fd is not None
    assert fcntl.fcntl(upload._fd, fcntl.F_GETFL) & os.O_DIRECT
    upload.commit()
    assert (tmp_path / "blob").read_bytes() == buffer[:]


@pytest.mark.skipif(sys.platform != "linux", reason="direct I/O as Linux has it")
def test_what_direct_io_refuses_is_written_buffered(tmp_path: Path) -> None:
    # Direct I/O wants block-aligned memory and lengths: memory one byte past a page is
    # refused (EINVAL), and so is a last batch of odd length. Both are written, buffered.
    data = payload(3 * MiB + 1)
    upload = _LocalUpload(tmp_path / "blob")
    aligned = mmap.mmap(-1, MiB)
    aligned[:] = data[:MiB]
    upload.write(memoryview(aligned))
    upload.write(memoryview(data)[MiB : 2 * MiB + 1])  # misaligned memory, odd length
    aligned[:] = data[2 * MiB + 1 : 3 * MiB + 1]
    upload.write(memoryview(aligned))
    upload.commit()
    assert (tmp_path / "blob").read_bytes() == data


def _direct_io_allowed(directory: Path) -> bool:
    try:
        os.close(os.open(directory / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
    except OSError:
        return False
    return True


async def test_odd_sizes_round_trip_through_direct_io(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    for size in (1, 4095, 4097, 8 * MiB - 1, 8 * MiB, 8 * MiB + 1, 16 * MiB + 4096 + 7):
        key, data = new_key(), payload(size, seed=size)
        info = await store.put_stream(key, chunks_of(data), max_bytes=size)
        assert (info.size, info.sha256) == (size, hashlib.sha256(data).hexdigest())
        assert await read_all(store, key) == data


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_refused(backend: Backend, key: str) -> None:
    store = backend.store
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.put_stream(key, chunks_of(b"x"), max_bytes=10)
    with pytest.raises(ValueError, match="invalid blob key"):
        await read_all(store, key)
    for call in (store.size, store.delete, store.exists):
        with pytest.raises(ValueError, match="invalid blob key"):
            await call(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        async with store.local_copy(key):
            pass
    assert backend.leftovers() == []


async def test_delete_is_idempotent(backend: Backend) -> None:
    store, key = backend.store, new_key()
    await store.put_stream(key, chunks_of(b"bytes"), max_bytes=10)
    await store.delete(key)
    await store.delete(key)
    await store.delete(new_key())
    assert not await store.exists(key)
    assert backend.leftovers() == []


async def test_local_copy(backend: Backend) -> None:
    store, key = backend.store, new_key()
    data = payload(3 * MiB + 1)
    await store.put_stream(key, chunks_of(data), max_bytes=len(data))
    async with store.local_copy(key) as path:
        assert path.read_bytes() == data
    if isinstance(store, S3BlobStore):
        assert not path.exists()
    else:
        assert path.exists()  # the blob's own file


async def test_missing_blob(backend: Backend) -> None:
    store, key = backend.store, new_key()
    assert not await store.exists(key)
    with pytest.raises(BlobNotFoundError):
        await read_all(store, key)
    with pytest.raises(BlobNotFoundError):
        await store.size(key)
    with pytest.raises(BlobNotFoundError):
        async with store.local_copy(key):
            pass


def test_too_large_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(BlobTooLargeError(1024)))
    assert (error.limit, str(error)) == (1024, "the upload exceeds the limit of 1024 bytes")


def test_store_from_settings(tmp_path: Path) -> None:
    default = blob_store_from_settings(Settings(data_dir=tmp_path), env={})
    assert isinstance(default, LocalBlobStore)
    assert (tmp_path / "blobs").is_dir()
    s3 = blob_store_from_settings(Settings(storage="s3://bucket"), env={"AWS_REGION": "eu-west-1"})
    assert isinstance(s3, S3BlobStore)
    for storage in ("gs://bucket/x", "s3:///prefix"):
        with pytest.raises(SettingsError):
            blob_store_from_settings(Settings(storage=storage), env={})


async def generated(total: int, chunk_size: int = 64 * 1024 + 7) -> AsyncIterator[bytes]:
    block = os.urandom(chunk_size)
    for _ in range(total // chunk_size):
        yield block
    yield block[: total % chunk_size]


# Run in a fresh process: in this one, memory freed by earlier tests would be reused and hide
# any growth. VmHWM is the true peak of the process's memory, with no sampling to miss it (and,
# unlike ru_maxrss, not inherited from the parent process).
MEMORY_PROBE = """
import asyncio, os, sys
from pathlib import Path
from aiplatform.storage import LocalBlobStore

TOTAL = 200 * 1000 * 1000

async def chunks(size=64 * 1024 + 7):
    block = os.urandom(size)
    for _ in range(TOTAL // size):
        yield block
    yield block[: TOTAL % size]

def memory(field):
    status = Path("/proc/self/status").read_text()
    return int(status.split(field + ":")[1].split()[0]) * 1024

async def main():
    store = LocalBlobStore(Path(sys.argv[1]))
    before = memory("VmRSS")
    info = await store.put_stream("memory/probe", chunks(), max_bytes=TOTAL)
    print(info.size, memory("VmHWM") - before)

asyncio.run(main())
"""


async def test_local_upload_memory_is_constant(tmp_path: Path) -> None:
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MEMORY_PROBE, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await probe.communicate()
    assert probe.returncode == 0
    size, growth = map(int, stdout.split())
    print(f"\npeak RSS growth for a 200 MB upload: {growth / MiB:.1f} MiB")
    assert size == 200 * 1000 * 1000
    assert growth < 50 * MiB
    (tmp_path / "memory" / "probe").unlink()  # pytest keeps the last runs' tmp_path


async def test_local_upload_throughput(tmp_path: Path) -> None:
    """put_stream of in-memory chunks against shutil.copyfileobj (and fsync) of a file of the
    same size, and against SHA-256 alone, which bounds it; the best of three runs each."""
    total = 200 * 1000 * 1000
    source = tmp_path / "source"
    with source.open("wb") as file:
        file.write(os.urandom(1 << 20) * (total >> 20))
        file.write(os.urandom(total % (1 << 20)))
    store = LocalBlobStore(tmp_path / "blobs")
    data = source.read_bytes()
    copy_s, put_s, hash_s = [], [], []
    for _ in range(3):
        started = time.perf_counter()
        with source.open("rb") as src, (tmp_path / "copy").open("wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())  # as the store does, and bench/dataset_upload.py's copy
        copy_s.append(time.perf_counter() - started)
        (tmp_path / "copy").unlink()
        key = new_key()
        started = time.perf_counter()
        await store.put_stream(key, generated(total), max_bytes=total)
        put_s.append(time.perf_counter() - started)
        await store.delete(key)
        started = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        hash_s.append(time.perf_counter() - started)
    source.unlink()
    copy_rate, put_rate, hash_rate = (total / min(s) / 1e6 for s in (copy_s, put_s, hash_s))
    print(
        f"\nput_stream {put_rate:.0f} MB/s, copyfileobj {copy_rate:.0f} MB/s "
        f"(ratio {put_rate / copy_rate:.2f}), sha256 alone {hash_rate:.0f} MB/s"
    )
    # The upload must hash every byte, so hashing is its floor; the pipeline around it (threads,
    # batches, fsync) may cost at most as much again, plus a margin for a noisy neighbour.
    assert put_rate > hash_rate / 3
