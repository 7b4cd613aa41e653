"""GPU monitoring: worker processes report themselves and their host's GPUs to Redis, and
`GET /api/v2/gpu/status` serves it.

This machine has no NVIDIA driver, so the real pynvml tells the first test why; the rest read
GPUs from `fake_nvml` under a host name of their own, which they remove afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import msgspec
import pytest
import redis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.config import Settings
from aiplatform.monitoring import devices
from aiplatform.monitoring.devices import GpuRef, gpu_ref
from aiplatform.monitoring.nvml import read_gpus, start_nvml
from aiplatform.monitoring.records import BEAT_TTL_S, HISTORY_S, MonitoringKeys
from aiplatform.monitoring.usage import gpu_usage
from aiplatform.workers.monitoring import Monitor
from conftest import REDIS_URL
from fake_nvml import (
    FakeGpu,
    FakeNvml,
    NVMLError_DriverNotLoaded,
    NVMLError_GpuIsLost,
    NVMLError_LibraryNotFound,
    NVMLError_NotSupported,
)

Client = AsyncTestClient[Litestar]
GIB = 1024**3
STATUS = "/api/v2/gpu/status"


def h100(**changes: Any) -> FakeGpu:
    values: dict[str, Any] = {
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-11111111-2222-3333-4444-555555555555",
        "utilization": 87,
        "memory_used": 40 * GIB,
        "memory_total": 80 * GIB,
        "temperature": 66,
        "power_mw": 312_500,
    }
    return FakeGpu(**(values | changes))


def a10(**changes: Any) -> FakeGpu:
    values: dict[str, Any] = {
        "name": "NVIDIA A10",
        "uuid": "GPU-66666666-7777-8888-9999-000000000000",
        "utilization": 12,
        "memory_used": 3 * GIB,
        "memory_total": 24 * GIB,
        "temperature": 41,
        "power_mw": 61_000,
        # Some boards cannot report their power draw.
        "failing": {"nvmlDeviceGetPowerUsage": NVMLError_NotSupported()},
    }
    return FakeGpu(**(values | changes))


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(settings: Settings) -> str:
    return key_prefix(settings.instance)


@pytest.fixture
def fake_host(redis_client: redis.Redis, prefix: str) -> Iterator[str]:
    """A host name for the fake GPUs; its keys are removed afterwards, so later tests see this
    machine as it is."""
    host = f"fake-gpu-host-{uuid.uuid4().hex[:8]}"
    yield host
    keys = MonitoringKeys(prefix)
    stale = list(redis_client.scan_iter(match=f"{prefix}*{host}*", count=1000))
    if stale:
        redis_client.delete(*stale)
    redis_client.zrem(keys.hosts, host)
    members = redis_client.zrange(keys.workers, 0, -1)
    ours = [member for member in members if member.decode().startswith(f"{host}:")]
    if ours:
        redis_client.zrem(keys.workers, *ours)


@pytest.fixture(autouse=True)
def no_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


async def status(client: Client, **params: str) -> dict[str, Any]:
    response = await client.get(STATUS, params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def on_host(entries: list[dict[str, Any]], host: str) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["host"] == host]


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def tick(monitor: Monitor) -> Any:
    return await asyncio.to_thread(monitor.tick)


# Without an NVIDIA driver -------------------------------------------------------------------


async def test_without_a_driver_the_status_says_why_and_still_lists_this_runs_workers(
    client: Client,
) -> None:
    # The test session's Dramatiq worker (conftest) runs a monitor with the real pynvml.
    host, pid = socket.gethostname(), os.getpid()
    deadline = time.monotonic() + 2 * BEAT_TTL_S
    while True:
        data = await status(client)
        workers = [w for w in data["workers"] if (w["host"], w["pid"]) == (host, pid)]
        if (workers and on_host(data["hosts"], host)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)

    assert data["available"] is False
    assert "NVML could not be loaded: libnvidia-ml.so.1 not found" in data["reason"]
    assert "no NVIDIA driver" in data["reason"]
    assert data["gpus"] == []
    [report] = on_host(data["hosts"], host)
    assert report["available"] is False
    assert report["reason"].startswith("NVML could not be loaded")
    assert report["gpus"] == []
    assert "history" not in data

    [worker] = workers
    assert {"projector", "data"} <= set(worker["queues"])
    assert worker["cpu_percent"] >= 0
    assert worker["memory_rss"] > 10 * 1024**2
    assert 0 < worker["host_memory_used"] < worker["host_memory_total"]
    assert worker["devices"] == []
    assert abs(unix(worker["seen_at"]) - time.time()) < 2 * BEAT_TTL_S


async def test_a_missing_or_stopped_driver_is_reported_and_retried_only_after_a_while(
    redis_client: redis.Redis, prefix: str, fake_host: str
) -> None:
    no_library = FakeNvml([h100()], init_error=NVMLError_LibraryNotFound())
    monitor = Monitor(redis_client, prefix, host=fake_host, nvml=no_library)
    report = await tick(monitor)
    await asyncio.to_thread(monitor.close)
    assert report.available is False
    assert report.reason == (
        "NVML could not be loaded: libnvidia-ml.so.1 not found — no NVIDIA driver on this host"
    )

    no_driver = FakeNvml([h100()], init_error=NVMLError_DriverNotLoaded())
    monitor = Monitor(redis_client, prefix, host=fake_host, nvml=no_driver)
    report = await tick(monitor)
    assert report.reason.startswith("NVML found no running NVIDIA driver")
    await tick(monitor)
    assert no_driver.init_calls == 1  # not retried on every tick


# With fake GPUs ------------------------------------------------------------------------------


def test_a_reading_a_device_does_not_support_is_none_not_a_failed_sample() -> None:
    nvml = FakeNvml(
        [
            a10(failing={"nvmlDeviceGetPowerUsage": NVMLError_NotSupported()}),
            h100(failing={"nvmlDeviceGetTemperature": NVMLError_NotSupported()}),
            h100(failing={"nvmlDeviceGetHandleByIndex": NVMLError_GpuIsLost()}),
        ]
    )
    assert start_nvml(nvml) == 3
    first, second, lost = read_gpus(nvml)

    assert (first.power_watts, first.temperature, first.utilization) == (None, 41, 12)
    assert (second.temperature, second.power_watts, second.name) == (None, 312.5, h100().name)
    assert lost.index == 2
    assert (lost.name, lost.utilization, lost.memory_used) == (None, None, None)


async def test_status_reports_the_fake_devices_exactly_with_the_job_assigned_to_one(
    client: Client, redis_client: redis.Redis, prefix: str, fake_host: str
) -> None:
    now = float(int(time.time()))
    monitor = Monitor(
        redis_client, prefix, host=fake_host, nvml=FakeNvml([h100(), a10()]), clock=lambda: now
    )
    job_id = str(uuid.uuid4())
    devices.assign(["cuda:1", "cpu"], job_id)
    try:
        report = await tick(monitor)
        data = await status(client)
    finally:
        devices.release(job_id)

    assert report is not None
    assert report.available
    assert data["available"] is True
    assert data["reason"] is None
    gpus = on_host(data["gpus"], fake_host)
    assert [unix(gpu.pop("sampled_at")) for gpu in gpus] == [now, now]
    assert gpus == [
        {
            "host": fake_host,
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-11111111-2222-3333-4444-555555555555",
            "utilization": 87,  # %
            "memory_used": 40 * GIB,  # bytes
            "memory_total": 80 * GIB,
            "temperature": 66,  # °C
            "power_watts": 312.5,  # W (NVML reports 312 500 mW)
            "job_id": None,
        },
        {
            "host": fake_host,
            "index": 1,
            "name": "NVIDIA A10",
            "uuid": "GPU-66666666-7777-8888-9999-000000000000",
            "utilization": 12,
            "memory_used": 3 * GIB,
            "memory_total": 24 * GIB,
            "temperature": 41,
            "power_watts": None,  # not supported by this board
            "job_id": job_id,
        },
    ]
    [host_report] = on_host(data["hosts"], fake_host)
    assert host_report["available"] is True
    assert [gpu["index"] for gpu in host_report["gpus"]] == [0, 1]
    [worker] = on_host(data["workers"], fake_host)
    assert {"index": 1, "uuid": None, "job_id": job_id} in worker["devices"]


async def test_history_holds_successive_samples_and_is_trimmed_to_an_hour(
    client: Client, redis_client: redis.Redis, prefix: str, fake_host: str
) -> None:
    now = float(int(time.time()))
    times = [now - HISTORY_S - 60, now - 10, now - 5, now]
    clock = iter(times)
    gpu = h100()
    monitor = Monitor(
        redis_client, prefix, host=fake_host, nvml=FakeNvml([gpu]), clock=lambda: next(clock)
    )
    for utilization in (5, 20, 30, 40):
        gpu.utilization = utilization
        gpu.memory_used = utilization * GIB
        await tick(monitor)

    history_key = MonitoringKeys(prefix).history(fake_host, 0)
    scores = [score for _, score in redis_client.zrange(history_key, 0, -1, withscores=True)]
    assert scores == times[1:]  # the sample of over an hour ago is gone
    assert 0 < redis_client.ttl(history_key) <= HISTORY_S

    data = await status(client, history="true", host=fake_host, index="0")
    [history] = data["history"]
    assert (history["host"], history["index"], history["name"]) == (fake_host, 0, gpu.name)
    assert [unix(t) for t in history["times"]] == times[1:]
    assert history["utilization"] == [20, 30, 40]
    assert history["memory_used"] == [20 * GIB, 30 * GIB, 40 * GIB]
    assert history["memory_total"] == [80 * GIB] * 3
    assert history["temperature"] == [66] * 3
    assert history["power_watts"] == [312.5] * 3
    assert history["job_id"] == [None] * 3

    recent = await status(client, minutes="1", host=fake_host)
    assert recent["history"][0]["utilization"] == [20, 30, 40]
    refused = await client.get(STATUS, params={"minutes": "61"})
    assert refused.status_code == 400, refused.text


async def test_the_latest_sample_expires_after_its_ttl(
    client: Client, redis_client: redis.Redis, prefix: str, fake_host: str
) -> None:
    keys = MonitoringKeys(prefix)
    monitor = Monitor(redis_client, prefix, host=fake_host, nvml=FakeNvml([h100()]))
    await tick(monitor)
    await asyncio.to_thread(monitor.close)
    assert 0 < redis_client.pttl(keys.latest(fake_host, 0)) <= 5_000  # DESIGN.md: cached 5 s

    short_lived = Monitor(
        redis_client, prefix, host=fake_host, nvml=FakeNvml([h100()]), latest_ttl_s=0.2
    )
    await tick(short_lived)
    assert len(on_host((await status(client))["gpus"], fake_host)) == 1
    await asyncio.sleep(0.4)
    assert redis_client.get(keys.latest(fake_host, 0)) is None
    assert on_host((await status(client))["gpus"], fake_host) == []
    assert redis_client.zcard(keys.history(fake_host, 0)) == 2  # history outlives it


async def test_each_hosts_samples_are_published_on_the_gpu_channel(
    redis_client: redis.Redis, prefix: str, fake_host: str
) -> None:
    subscription = redis_client.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(MonitoringKeys(prefix).gpu_channel)
    try:
        await tick(Monitor(redis_client, prefix, host=fake_host, nvml=FakeNvml([h100()])))
        deadline = time.monotonic() + 5
        published = None
        while published is None and time.monotonic() < deadline:
            message = await asyncio.to_thread(subscription.get_message, timeout=1.0)
            if message is not None:
                published = msgspec.json.decode(message["data"])
                if published["host"] != fake_host:  # this machine's own monitor
                    published = None
    finally:
        subscription.close()

    assert published is not None
    assert published["type"] == "GpuSampled"
    assert published["available"] is True
    assert [(g["index"], g["utilization"], g["power_watts"]) for g in published["gpus"]] == [
        (0, 87, 312.5)
    ]


async def test_one_process_per_host_samples_its_gpus_until_it_stops(
    redis_client: redis.Redis, prefix: str, fake_host: str
) -> None:
    first = Monitor(redis_client, prefix, host=fake_host, nvml=FakeNvml([h100()]))
    second = Monitor(redis_client, prefix, host=fake_host, nvml=FakeNvml([h100()]))
    second.pid = first.pid + 1  # another worker process of the host

    assert await tick(first) is not None
    assert await tick(second) is None  # beats, but leaves the GPUs to the first
    await asyncio.to_thread(first.close)
    assert await tick(second) is not None
    await asyncio.to_thread(second.close)


async def test_a_jobs_gpu_usage_is_summarised_from_the_history(
    redis_client: redis.Redis, prefix: str, fake_host: str
) -> None:
    start = float(int(time.time())) - 60
    clock = iter([start + 5, start + 10, start + 15, start + 40])
    gpu, other = h100(), h100(uuid="GPU-other")
    monitor = Monitor(
        redis_client,
        prefix,
        host=fake_host,
        nvml=FakeNvml([other, gpu]),
        clock=lambda: next(clock),
    )
    for utilization, memory_gib, watts in ((20, 1, 100), (40, 3, 200), (60, 2, 300), (99, 9, 999)):
        gpu.utilization, gpu.memory_used, gpu.power_mw = utilization, memory_gib * GIB, watts * 1000
        await tick(monitor)

    cache = Cache(connect(REDIS_URL), prefix)
    try:
        # The job ran from `start` to `start + 20` on cuda:1; the fourth sample came later.
        usage = await gpu_usage(cache, ["cuda:1", "cpu"], start, start + 20, host=fake_host)
        nothing = await gpu_usage(cache, ["cpu"], start, start + 20, host=fake_host)
        before = await gpu_usage(cache, ["cuda:1"], start - 600, start, host=fake_host)
    finally:
        await cache.close()

    assert nothing is None
    assert before is None
    assert usage is not None
    [device] = usage.devices
    assert (device.host, device.index, device.uuid) == (fake_host, 1, gpu.uuid)
    assert device.samples == 3
    assert device.utilization_mean == 40.0  # %
    assert device.utilization_max == 60
    assert device.memory_used_peak == 3 * GIB  # bytes
    assert device.memory_total == 80 * GIB
    assert device.power_mean_watts == 200.0
    assert device.energy_wh == round(200.0 * 20 / 3600, 4)  # mean power over the 20 s window
    assert (usage.utilization_mean, usage.energy_wh) == (40.0, device.energy_wh)
    assert usage.since.timestamp() == start


def test_cuda_devices_are_named_as_nvml_names_them() -> None:
    assert gpu_ref("cuda:1", env={}) == GpuRef(index=1)
    assert gpu_ref("cuda", env={}) == GpuRef(index=0)
    assert gpu_ref(2, env={}) == GpuRef(index=2)
    assert gpu_ref("cpu", env={}) is None
    visible = {"CUDA_VISIBLE_DEVICES": "3,2"}
    assert gpu_ref("cuda:1", env=visible) == GpuRef(index=2)
    assert gpu_ref("cuda:2", env=visible) is None
    assert gpu_ref("cuda:0", env={"CUDA_VISIBLE_DEVICES": ""}) is None
    by_uuid = {"CUDA_VISIBLE_DEVICES": "GPU-abc"}
    assert gpu_ref("cuda:0", env=by_uuid) == GpuRef(uuid="GPU-abc")
