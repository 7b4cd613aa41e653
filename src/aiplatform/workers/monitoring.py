"""Each worker process reports itself, and one process per host reports the host's GPUs.

Sampling runs in the workers, not in a scheduled actor: a message on the `monitoring` queue
reaches one worker on one machine, while every machine's GPUs must be seen. So a middleware
starts a thread in every worker process when it boots. Every `SAMPLE_INTERVAL_S` the thread
writes the process's heartbeat (CPU, memory, queues, the GPUs its jobs use); the one process
per host that holds the host's sampler lease also reads NVML and writes each GPU's latest sample
and history, with the job the host's heartbeats say runs on it. The lease keeps a host with
several worker processes from sampling its GPUs several times over; when its holder dies,
another process of the host takes over after `BEAT_TTL_S`.

Nothing here may stop a worker: with no NVIDIA driver the host reports why (and retries every
`NVML_RETRY_S`), and a failed tick (Redis away) is logged and tried again on the next.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import dramatiq
import msgspec
import psutil
import redis
from dramatiq.middleware import Middleware

from aiplatform.monitoring import devices
from aiplatform.monitoring.devices import DeviceUse, GpuRef
from aiplatform.monitoring.nvml import (
    GpuReading,
    NvmlUnavailableError,
    load_pynvml,
    read_gpus,
    start_nvml,
    stop_nvml,
)
from aiplatform.monitoring.records import (
    BEAT_TTL_S,
    HISTORY_S,
    LATEST_TTL_S,
    SAMPLE_INTERVAL_S,
    GpuIdentity,
    GpuSample,
    GpuSampled,
    HostReport,
    MonitoringKeys,
    WorkerBeat,
    history_point,
    utc,
    worker_member,
)

log = logging.getLogger(__name__)

NVML_RETRY_S = 60.0

# Takes the lease when it is free or already ours; refreshes its lifetime either way.
_TAKE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_DROP_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_encode = msgspec.json.encode


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class Monitor:
    """One process's reports: `tick` beats and, holding the host's lease, samples its GPUs.

    `nvml` is the NVML module (default: the real `pynvml`, loaded on first use); `clock` gives
    unix seconds. Redis calls are synchronous: the monitor runs on a thread of its own."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        queues: Callable[[], list[str]] = list,
        host: str | None = None,
        nvml: Any = None,
        clock: Callable[[], float] = time.time,
        latest_ttl_s: float = LATEST_TTL_S,
    ):
        self.client = client
        self.keys = MonitoringKeys(prefix)
        self.queues = queues
        self.host = host or socket.gethostname()
        self.pid = os.getpid()
        self.clock = clock
        self.latest_ttl_s = latest_ttl_s
        self._nvml = nvml
        self._nvml_started = False
        self._nvml_retry_at = 0.0
        self._unavailable = "NVML has not been tried yet"
        self._lease_owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._process = psutil.Process()
        self._cpu_measured = False

    @property
    def member(self) -> str:
        return worker_member(self.host, self.pid)

    def tick(self) -> HostReport | None:
        """Beats, then samples the host's GPUs if this process holds the lease; returns the
        host's report when it did."""
        now = self.clock()
        self.beat(now)
        if not self._take_lease():
            return None
        return self.sample_gpus(now)

    # -- the process ---------------------------------------------------------------------

    def beat(self, now: float | None = None) -> WorkerBeat:
        now = self.clock() if now is None else now
        memory = psutil.virtual_memory()
        beat = WorkerBeat(
            host=self.host,
            pid=self.pid,
            queues=self.queues(),
            cpu_percent=self._cpu_percent(),
            memory_rss=self._process.memory_info().rss,
            host_memory_used=memory.total - memory.available,
            host_memory_total=memory.total,
            devices=devices.in_use(),
            seen_at=utc(now),
        )
        with self.client.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.worker(self.member), _encode(beat), px=_ms(BEAT_TTL_S))
            pipe.zadd(self.keys.workers, {self.member: now})
            pipe.zremrangebyscore(self.keys.workers, "-inf", now - BEAT_TTL_S)
            pipe.expire(self.keys.workers, HISTORY_S)
            pipe.execute()
        return beat

    def _cpu_percent(self) -> float:
        """Of one core, since the last beat; the first beat averages over the process's life."""
        if self._cpu_measured:
            percent: float = self._process.cpu_percent(interval=None)
            return percent
        self._process.cpu_percent(interval=None)  # starts the interval the next beat measures
        self._cpu_measured = True
        times = self._process.cpu_times()
        alive_s: float = max(time.time() - self._process.create_time(), 1e-3)
        busy_s: float = times.user + times.system
        return round(100.0 * busy_s / alive_s, 1)

    # -- the host's GPUs -----------------------------------------------------------------

    def _take_lease(self) -> bool:
        held = self.client.eval(
            _TAKE_LEASE, 1, self.keys.sampler(self.host), self._lease_owner, _ms(BEAT_TTL_S)
        )
        return bool(held)

    def sample_gpus(self, now: float) -> HostReport:
        readings, reason = self._read_nvml()
        jobs = self._jobs_on_host(now) if readings else []
        samples = [
            GpuSample(
                host=self.host,
                index=reading.index,
                name=reading.name,
                uuid=reading.uuid,
                utilization=reading.utilization,
                memory_used=reading.memory_used,
                memory_total=reading.memory_total,
                temperature=reading.temperature,
                power_watts=reading.power_watts,
                job_id=_job_on(reading, jobs),
                sampled_at=utc(now),
            )
            for reading in readings
        ]
        report = HostReport(
            host=self.host,
            available=reason is None,
            reason=reason,
            gpus=[GpuIdentity(index=s.index, uuid=s.uuid, name=s.name) for s in samples],
            sampled_at=utc(now),
        )
        self._store(report, samples, now)
        return report

    def _store(self, report: HostReport, samples: list[GpuSample], now: float) -> None:
        keys = self.keys
        with self.client.pipeline(transaction=False) as pipe:
            for sample in samples:
                history = keys.history(self.host, sample.index)
                pipe.set(
                    keys.latest(self.host, sample.index),
                    _encode(sample),
                    px=_ms(self.latest_ttl_s),
                )
                pipe.zadd(history, {_encode(history_point(sample)): now})
                pipe.zremrangebyscore(history, "-inf", f"({now - HISTORY_S}")
                pipe.expire(history, HISTORY_S)
            pipe.set(keys.host(self.host), _encode(report), px=_ms(BEAT_TTL_S))
            pipe.zadd(keys.hosts, {self.host: now})
            pipe.zremrangebyscore(keys.hosts, "-inf", now - BEAT_TTL_S)
            pipe.expire(keys.hosts, HISTORY_S)
            sampled = GpuSampled(
                host=self.host,
                available=report.available,
                gpus=samples,
                sampled_at=report.sampled_at,
            )
            pipe.publish(keys.gpu_channel, _encode(sampled))
            pipe.execute()

    def _read_nvml(self) -> tuple[list[GpuReading], str | None]:
        """This host's GPUs, or none and why."""
        if not self._nvml_started:
            if time.monotonic() < self._nvml_retry_at:
                return [], self._unavailable
            try:
                if self._nvml is None:
                    self._nvml = load_pynvml()
                start_nvml(self._nvml)
                self._nvml_started = True
            except NvmlUnavailableError as error:
                return [], self._give_up_for_now(str(error))
        nvml = self._nvml
        try:
            readings = read_gpus(nvml)
        except nvml.NVMLError as error:  # the driver went away: start afresh next time
            self._stop_nvml()
            return [], self._give_up_for_now(f"NVML stopped answering: {error}")
        if not readings:
            return [], "NVML is loaded but finds no NVIDIA GPU on this host"
        return readings, None

    def _give_up_for_now(self, reason: str) -> str:
        if reason != self._unavailable:
            log.info("GPU metrics unavailable on %s: %s", self.host, reason)
        self._unavailable = reason
        self._nvml_retry_at = time.monotonic() + NVML_RETRY_S
        return reason

    def _jobs_on_host(self, now: float) -> list[DeviceUse]:
        """What the heartbeats of this host's worker processes say runs on its GPUs."""
        members = cast(
            list[bytes], self.client.zrangebyscore(self.keys.workers, now - BEAT_TTL_S, "+inf")
        )
        prefix = f"{self.host}:"
        ours = [m.decode() for m in members if m.decode().startswith(prefix)]
        if not ours:
            return []
        beats = self.client.mget([self.keys.worker(member) for member in ours])
        return [
            use
            for raw in beats
            if raw is not None
            for use in msgspec.json.decode(raw, type=WorkerBeat).devices
        ]

    # -- stopping ------------------------------------------------------------------------

    def _stop_nvml(self) -> None:
        if self._nvml_started:
            stop_nvml(self._nvml)
            self._nvml_started = False

    def close(self) -> None:
        """Says this process is gone (its beat and its lease), and releases NVML."""
        self._stop_nvml()
        with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.worker(self.member))
            pipe.zrem(self.keys.workers, self.member)
            pipe.eval(_DROP_LEASE, 1, self.keys.sampler(self.host), self._lease_owner)
            pipe.execute()


def _job_on(reading: GpuReading, jobs: list[DeviceUse]) -> str | None:
    for use in jobs:
        if GpuRef(index=use.index, uuid=use.uuid).matches(reading.index, reading.uuid):
            return use.job_id
    return None


class MonitorThread:
    """Ticks a monitor every `interval_s`, and beats at once when a job's devices change (so
    the host's sampler learns of the job within one interval)."""

    def __init__(self, monitor: Monitor, interval_s: float = SAMPLE_INTERVAL_S):
        self.monitor = monitor
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stopping = False
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._stop_listening: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._stop_listening = devices.on_change(self._wake.set)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        self._stop_listening()
        self._wake.set()
        self._thread.join(timeout_s)
        self._safely(self.monitor.close)

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            woken = self._wake.wait(max(0.0, due - time.monotonic()))
            if self._stopping:
                return
            if woken:
                self._wake.clear()
                self._safely(self.monitor.beat)
                continue
            self._safely(self.monitor.tick)
            due = max(due + self.interval_s, time.monotonic())

    def _safely(self, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as error:
            if not self._failing:
                log.warning("monitoring failed, retrying every %.0f s: %s", self.interval_s, error)
            self._failing = True
        else:
            if self._failing:
                log.info("monitoring recovered")
            self._failing = False


class _ProcessMonitors:
    """One monitor thread per process, however many Dramatiq workers it runs (tests run
    several); it reports the union of their queues and stops with the last of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[int, frozenset[str]] = {}
        self._thread: MonitorThread | None = None

    def queues(self) -> list[str]:
        with self._lock:
            return sorted(set().union(*self._queues.values()))

    def attach(self, worker: dramatiq.Worker, queues: set[str], monitor: Monitor) -> None:
        with self._lock:
            self._queues[id(worker)] = frozenset(queues)
            if self._thread is None:
                self._thread = MonitorThread(monitor)
                self._thread.start()

    def detach(self, worker: dramatiq.Worker) -> None:
        with self._lock:
            self._queues.pop(id(worker), None)
            thread = self._thread if not self._queues else None
            if thread is not None:
                self._thread = None
        if thread is not None:
            thread.stop()


_process_monitors = _ProcessMonitors()


class MonitoringMiddleware(Middleware):
    """Starts this process's monitor when a worker boots; stops it when the last one stops.
    `client`: the broker's Redis client, shared with the consumers."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = worker.consumer_whitelist or broker.get_declared_queues()
        monitor = Monitor(self.client, self.prefix, queues=_process_monitors.queues)
        _process_monitors.attach(worker, set(queues), monitor)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        _process_monitors.detach(worker)
