"""A job's GPU usage over its run, summarised from the monitor's history, for
`JobSucceeded.resource_usage` (`msgspec.to_builtins(usage)` makes it JSON)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from datetime import datetime
from statistics import fmean

import msgspec
from redis.exceptions import RedisError

from aiplatform.cache import Cache
from aiplatform.monitoring.devices import GpuRef, gpu_refs
from aiplatform.monitoring.records import HistoryPoint, HostReport, MonitoringKeys, utc

log = logging.getLogger(__name__)

_SECONDS_PER_HOUR = 3600.0


class DeviceUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU over the window. Units: %, bytes, W, Wh; None where the device did not report
    the value. `energy_wh` estimates the window's energy: mean power times the window's length."""

    host: str
    index: int
    uuid: str | None
    name: str | None
    samples: int
    utilization_mean: float | None
    utilization_max: int | None
    memory_used_peak: int | None
    memory_total: int | None
    power_mean_watts: float | None
    energy_wh: float | None


class GpuUsage(msgspec.Struct, frozen=True, kw_only=True):
    since: datetime
    until: datetime
    devices: list[DeviceUsage]
    # Over all the devices: the mean of their means, and the sum of their energies.
    utilization_mean: float | None
    energy_wh: float | None


def summarize_device(
    host: str,
    index: int,
    uuid: str | None,
    name: str | None,
    points: list[HistoryPoint],
    window_s: float,
) -> DeviceUsage:
    utilization = [p.utilization for p in points if p.utilization is not None]
    memory_used = [p.memory_used for p in points if p.memory_used is not None]
    memory_total = [p.memory_total for p in points if p.memory_total is not None]
    power = [p.power_watts for p in points if p.power_watts is not None]
    power_mean = fmean(power) if power else None
    return DeviceUsage(
        host=host,
        index=index,
        uuid=uuid,
        name=name,
        samples=len(points),
        utilization_mean=round(fmean(utilization), 2) if utilization else None,
        utilization_max=max(utilization) if utilization else None,
        memory_used_peak=max(memory_used) if memory_used else None,
        memory_total=max(memory_total) if memory_total else None,
        power_mean_watts=round(power_mean, 3) if power_mean is not None else None,
        energy_wh=(
            round(power_mean * window_s / _SECONDS_PER_HOUR, 4) if power_mean is not None else None
        ),
    )


async def gpu_usage(
    cache: Cache,
    devices: Iterable[str | int],
    since: float,
    until: float | None = None,
    *,
    host: str | None = None,
) -> GpuUsage | None:
    """The usage of `devices` (named as in JobStarted: `cuda:0`, ...; `cpu` is skipped) on
    `host` (default: this one) between `since` and `until` (unix seconds, default now).

    None when there is nothing to summarise: no GPU among `devices`, no samples in the window
    (NVML unavailable, a run shorter than a sampling interval), or Redis unreachable — a
    summary is never a reason to fail a job."""
    refs = gpu_refs(devices)
    if not refs or cache.client is None:
        return None
    until = time.time() if until is None else until
    host = host or socket.gethostname()
    keys = MonitoringKeys(cache.prefix)
    try:
        raw_report = await cache.client.get(keys.host(host))
        report = msgspec.json.decode(raw_report, type=HostReport) if raw_report else None
        gpus = _devices(refs, report)
        async with cache.client.pipeline(transaction=False) as pipe:
            for index, _, _ in gpus:
                pipe.zrangebyscore(keys.history(host, index), since, until)
            rows = await pipe.execute()
    except (RedisError, OSError) as error:
        log.warning("no GPU usage summary, Redis is unavailable: %s", error)
        return None
    window_s = max(0.0, until - since)
    usages = [
        summarize_device(
            host,
            index,
            uuid,
            name,
            [msgspec.json.decode(r, type=HistoryPoint) for r in raws],
            window_s,
        )
        for (index, uuid, name), raws in zip(gpus, rows, strict=True)
    ]
    usages = [usage for usage in usages if usage.samples]
    if not usages:
        return None
    means = [u.utilization_mean for u in usages if u.utilization_mean is not None]
    energies = [u.energy_wh for u in usages if u.energy_wh is not None]
    return GpuUsage(
        since=utc(since),
        until=utc(until),
        devices=usages,
        utilization_mean=round(fmean(means), 2) if means else None,
        energy_wh=round(sum(energies), 4) if energies else None,
    )


def _devices(
    refs: list[GpuRef], report: HostReport | None
) -> list[tuple[int, str | None, str | None]]:
    """(index, uuid, name) of each GPU the refs name; one named by UUID needs the host's
    report to find its index."""
    known = report.gpus if report is not None else []
    found: list[tuple[int, str | None, str | None]] = []
    for ref in refs:
        gpu = next((g for g in known if ref.matches(g.index, g.uuid)), None)
        if gpu is not None:
            found.append((gpu.index, gpu.uuid, gpu.name))
        elif ref.index is not None:
            found.append((ref.index, None, None))
    return found
