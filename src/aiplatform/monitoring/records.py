"""What the monitor keeps in Redis, and under which keys.

Under the cache's prefix (`aiplatform:v2:[instance:]`, see `cache.key_prefix`):

- `workers`: sorted set of `<host>:<pid>`, one per worker process, scored by its last beat
  (unix s); members silent for `BEAT_TTL_S` are trimmed, and the set expires an hour after
  the last beat.
- `worker:<host>:<pid>`: the process's `WorkerBeat` (JSON), expiring after `BEAT_TTL_S`.
- `gpu:hosts`: sorted set of the hosts whose GPUs are sampled, scored by their last report,
  trimmed and expiring like `workers`.
- `gpu:host:<host>`: the host's `HostReport` (NVML available or why not; its GPUs), expiring
  after `BEAT_TTL_S`.
- `gpu:latest:<host>:<index>`: the device's latest `GpuSample` (JSON), expiring after
  `LATEST_TTL_S`.
- `gpu:history:<host>:<index>`: sorted set of `HistoryPoint`s scored by sample time (unix s),
  trimmed to the last `HISTORY_S` on each write; the key expires an hour after the last one.
- `gpu:sampler:<host>`: the lease naming the one process of the host that samples its GPUs,
  renewed by its holder every tick, expiring after `BEAT_TTL_S`.

Each host's samples are also published, as a `GpuSampled` message, on the `gpu` channel
(`Cache.channel("gpu")`) for live streams.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from aiplatform.monitoring.devices import DeviceUse

SAMPLE_INTERVAL_S = 5.0
# DESIGN.md: GPU metrics are cached 5 s — one sampling interval.
LATEST_TTL_S = 5.0
# A worker (or a host's report) missing three beats in a row is gone.
BEAT_TTL_S = 3 * SAMPLE_INTERVAL_S
HISTORY_S = 3_600


class GpuSample(msgspec.Struct, frozen=True, kw_only=True):
    """One device at one moment. Units: utilization % (0-100), memory bytes, temperature °C,
    power W; None where the device does not report the value. `job_id`: the job running on
    it, as the training worker assigned it."""

    host: str
    index: int
    name: str | None
    uuid: str | None
    utilization: int | None
    memory_used: int | None
    memory_total: int | None
    temperature: int | None
    power_watts: float | None
    job_id: str | None
    sampled_at: datetime


class HistoryPoint(msgspec.Struct, frozen=True, array_like=True):
    """A sample as history keeps it: compact (a JSON array), the device named by its key."""

    t: float  # unix seconds
    utilization: int | None
    memory_used: int | None
    memory_total: int | None
    temperature: int | None
    power_watts: float | None
    job_id: str | None


class GpuIdentity(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    uuid: str | None
    name: str | None


class HostReport(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a host's GPUs can be read (and if not, why), and which there are."""

    host: str
    available: bool
    reason: str | None
    gpus: list[GpuIdentity]
    sampled_at: datetime


class GpuSampled(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Published on the `gpu` channel after each of a host's samples."""

    host: str
    available: bool
    gpus: list[GpuSample]
    sampled_at: datetime


class WorkerBeat(msgspec.Struct, frozen=True, kw_only=True):
    """A worker process, alive. `cpu_percent` is of one core (a busy multi-threaded process
    can pass 100); memory in bytes; `devices`: the GPUs its jobs run on."""

    host: str
    pid: int
    queues: list[str]
    cpu_percent: float
    memory_rss: int
    host_memory_used: int
    host_memory_total: int
    devices: list[DeviceUse]
    seen_at: datetime


def utc(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def history_point(sample: GpuSample) -> HistoryPoint:
    return HistoryPoint(
        t=sample.sampled_at.timestamp(),
        utilization=sample.utilization,
        memory_used=sample.memory_used,
        memory_total=sample.memory_total,
        temperature=sample.temperature,
        power_watts=sample.power_watts,
        job_id=sample.job_id,
    )


class MonitoringKeys:
    """The keys above, built like `Cache.key` builds every key: prefix, then parts joined by
    colons."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def _key(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(part) for part in parts)

    @property
    def workers(self) -> str:
        return self._key("workers")

    def worker(self, member: str) -> str:
        """`member`: `<host>:<pid>`, as in the `workers` set."""
        return self._key("worker", member)

    @property
    def hosts(self) -> str:
        return self._key("gpu", "hosts")

    def host(self, host: str) -> str:
        return self._key("gpu", "host", host)

    def latest(self, host: str, index: int) -> str:
        return self._key("gpu", "latest", host, index)

    def history(self, host: str, index: int) -> str:
        return self._key("gpu", "history", host, index)

    def sampler(self, host: str) -> str:
        return self._key("gpu", "sampler", host)

    @property
    def gpu_channel(self) -> str:
        """The pub/sub channel of the `gpu` stream, as `Cache.channel("gpu")` names it."""
        return self._key("channel", "gpu")


def worker_member(host: str, pid: int) -> str:
    return f"{host}:{pid}"
