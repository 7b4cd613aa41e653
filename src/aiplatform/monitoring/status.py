"""Reading the monitor's reports back from Redis: what `GET /api/v2/gpu/status` answers."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TypeVar

import msgspec
import redis.asyncio as aioredis

from aiplatform.monitoring.records import (
    BEAT_TTL_S,
    GpuSample,
    HistoryPoint,
    HostReport,
    MonitoringKeys,
    WorkerBeat,
    utc,
)

T = TypeVar("T")

NO_REPORTS = (
    f"no worker process has reported in the last {BEAT_TTL_S:.0f} s: GPUs are read by the "
    "workers, so start one (`aiplatform worker` or `aiplatform up`)"
)


class DeviceHistory(msgspec.Struct, frozen=True, kw_only=True):
    """One device's samples, oldest first, as columns a chart draws directly: the n-th value
    of each list belongs to `times[n]`. Units as in the samples (%, bytes, °C, W)."""

    host: str
    index: int
    uuid: str | None
    name: str | None
    times: list[datetime]
    utilization: list[int | None]
    memory_used: list[int | None]
    memory_total: list[int | None]
    temperature: list[int | None]
    power_watts: list[float | None]
    job_id: list[str | None]


class GpuStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`available`: whether any host's GPUs can be read; if not, `reason` says why. `hosts`
    says it per host. `history` only when asked for."""

    available: bool
    reason: str | None
    gpus: list[GpuSample]
    workers: list[WorkerBeat]
    hosts: list[HostReport]
    history: list[DeviceHistory] | None = None


def _decode_all(raws: list[bytes | None], kind: type[T]) -> list[T]:
    return [msgspec.json.decode(raw, type=kind) for raw in raws if raw is not None]


async def _get_all(client: aioredis.Redis, names: list[str]) -> list[bytes | None]:
    """The values of keys, in one round trip (a pipeline: MGET refuses an empty list)."""
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(name)
        values: list[bytes | None] = await pipe.execute()
    return values


async def read_status(client: aioredis.Redis, keys: MonitoringKeys, now: float) -> GpuStatus:
    """The live hosts, their GPUs' latest samples and the live worker processes. Raises
    redis' errors when Redis cannot be reached."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(keys.hosts, now - BEAT_TTL_S, "+inf")
        pipe.zrangebyscore(keys.workers, now - BEAT_TTL_S, "+inf")
        hosts, members = await pipe.execute()
    values = await _get_all(
        client, [keys.host(h.decode()) for h in hosts] + [keys.worker(m.decode()) for m in members]
    )
    reports = sorted(_decode_all(values[: len(hosts)], HostReport), key=lambda r: r.host)
    workers = sorted(_decode_all(values[len(hosts) :], WorkerBeat), key=lambda w: (w.host, w.pid))
    latest = [keys.latest(r.host, gpu.index) for r in reports for gpu in r.gpus]
    gpus = _decode_all(await _get_all(client, latest), GpuSample)
    available = any(report.available for report in reports)
    return GpuStatus(
        available=available,
        reason=None if available else unavailable_reason(reports),
        gpus=gpus,
        workers=workers,
        hosts=reports,
    )


def unavailable_reason(reports: list[HostReport]) -> str:
    """Each distinct reason once, with the hosts that give it."""
    if not reports:
        return NO_REPORTS
    hosts_by_reason: dict[str, list[str]] = defaultdict(list)
    for report in reports:
        hosts_by_reason[report.reason or "no GPU readings"].append(report.host)
    return "; ".join(f"{', '.join(hosts)}: {reason}" for reason, hosts in hosts_by_reason.items())


async def read_history(
    client: aioredis.Redis,
    keys: MonitoringKeys,
    reports: list[HostReport],
    since: float,
    *,
    host: str | None = None,
    index: int | None = None,
) -> list[DeviceHistory]:
    """The samples since `since` (unix s) of the reported devices, or of the one `host` and
    `index` name."""
    devices = [
        (report.host, gpu.index, gpu.uuid, gpu.name)
        for report in reports
        for gpu in report.gpus
        if (host is None or report.host == host) and (index is None or gpu.index == index)
    ]
    if not devices:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for device_host, device_index, _, _ in devices:
            pipe.zrangebyscore(keys.history(device_host, device_index), since, "+inf")
        rows = await pipe.execute()
    histories: list[DeviceHistory] = []
    for (device_host, device_index, uuid, name), raws in zip(devices, rows, strict=True):
        points = [msgspec.json.decode(raw, type=HistoryPoint) for raw in raws]
        histories.append(
            DeviceHistory(
                host=device_host,
                index=device_index,
                uuid=uuid,
                name=name,
                times=[utc(p.t) for p in points],
                utilization=[p.utilization for p in points],
                memory_used=[p.memory_used for p in points],
                memory_total=[p.memory_total for p in points],
                temperature=[p.temperature for p in points],
                power_watts=[p.power_watts for p in points],
                job_id=[p.job_id for p in points],
            )
        )
    return histories
