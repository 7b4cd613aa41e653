"""Prometheus metrics of an API process.

Two kinds. Requests (counts by route and status, latencies) are counted by this process as
they pass through it: every replica exposes its own, and Prometheus sums them. Figures of the
whole platform (the event log, projection lag, queues, jobs, workers, GPUs) are read from
PostgreSQL and Redis when Prometheus scrapes, with a few short queries whose answer is kept
for `FIGURES_TTL_S`, so scrapes from several Prometheus servers, or a dashboard's refreshes,
cost one read.

Each app has its own registry (not the library's global one): tests build many apps in one
process, and a process exposes only the figures of the app it serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aiplatform.monitoring.records import GpuSample, WorkerBeat
from aiplatform.platform_stats import ProjectionLag, QueueDepth

FIGURES_TTL_S = 2.0
JOB_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
# From a cached read (milliseconds) to a slow upload or a long read-your-writes wait.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class PlatformFigures:
    """What the platform's stores said at one moment. A source that could not be read is
    named in `unreadable` and its figures are left out, never reported as zero."""

    event_log_position: int | None = None
    lags: list[ProjectionLag] = field(default_factory=list)
    queues: list[QueueDepth] = field(default_factory=list)
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    workers: list[WorkerBeat] = field(default_factory=list)
    gpu_hosts: dict[str, bool] = field(default_factory=dict)  # host -> NVML readable
    gpus: list[GpuSample] = field(default_factory=list)
    unreadable: frozenset[str] = frozenset()


class _FiguresCollector(Collector):
    """Turns the latest `PlatformFigures` into metric families at each exposition."""

    def __init__(self) -> None:
        self.figures = PlatformFigures()

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        readable = GaugeMetricFamily(
            "aiplatform_figures_source_up",
            "Whether the last scrape could read this source of platform figures (1) or not (0)",
            labels=["source"],
        )
        for source in ("database", "redis"):
            readable.add_metric([source], 0 if source in figures.unreadable else 1)
        yield readable
        if figures.event_log_position is not None:
            appended = CounterMetricFamily(
                "aiplatform_events_appended",
                "Events appended to the event log: the global position of the newest one "
                "(an append that rolled back leaves a gap)",
            )
            appended.add_metric([], figures.event_log_position)
            yield appended
        yield from self._lags(figures.lags)
        yield from self._queues(figures.queues)
        if figures.jobs_by_status:
            jobs = GaugeMetricFamily(
                "aiplatform_jobs", "Training jobs by status (jobs read model)", labels=["status"]
            )
            for status, count in sorted(figures.jobs_by_status.items()):
                jobs.add_metric([status], count)
            yield jobs
        if "redis" not in figures.unreadable:
            yield from self._workers(figures.workers)
            yield from self._gpus(figures)

    def _lags(self, lags: list[ProjectionLag]) -> Iterator[Metric]:
        labels = ["read_model", "version", "state"]
        events = GaugeMetricFamily(
            "aiplatform_projection_lag_events",
            "Committed events a read model has not applied yet",
            labels=labels,
        )
        seconds = GaugeMetricFamily(
            "aiplatform_projection_lag_seconds",
            "Age of the oldest event a read model has not applied yet (0 when caught up)",
            labels=labels,
        )
        for lag in lags:
            values = [lag.read_model, lag.version, lag.state]
            events.add_metric(values, lag.events_behind)
            seconds.add_metric(values, lag.seconds_behind)
        if lags:
            yield events
            yield seconds

    def _queues(self, queues: list[QueueDepth]) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "aiplatform_queue_messages",
            "Messages in a Dramatiq queue: ready to run, delayed (retries in backoff) or dead",
            labels=["queue", "state"],
        )
        for queue in queues:
            depth.add_metric([queue.queue, "ready"], queue.ready)
            depth.add_metric([queue.queue, "delayed"], queue.delayed)
            depth.add_metric([queue.queue, "dead"], queue.dead)
        if queues:
            yield depth

    def _workers(self, workers: list[WorkerBeat]) -> Iterator[Metric]:
        alive = GaugeMetricFamily(
            "aiplatform_worker_processes",
            "Worker processes that reported in the last 15 s, by queue they consume",
            labels=["queue"],
        )
        per_queue: dict[str, int] = {}
        for worker in workers:
            for queue in worker.queues:
                per_queue[queue] = per_queue.get(queue, 0) + 1
        for queue, count in sorted(per_queue.items()):
            alive.add_metric([queue], count)
        yield alive

    def _gpus(self, figures: PlatformFigures) -> Iterator[Metric]:
        available = GaugeMetricFamily(
            "aiplatform_gpu_host_available",
            "Whether a worker host's GPUs can be read through NVML (1) or not (0)",
            labels=["host"],
        )
        for host, readable in sorted(figures.gpu_hosts.items()):
            available.add_metric([host], 1 if readable else 0)
        yield available
        labels = ["host", "index", "name"]
        families = {
            "utilization": GaugeMetricFamily(
                "aiplatform_gpu_utilization_percent", "GPU utilization", labels=labels
            ),
            "memory_used": GaugeMetricFamily(
                "aiplatform_gpu_memory_used_bytes", "GPU memory in use", labels=labels
            ),
            "memory_total": GaugeMetricFamily(
                "aiplatform_gpu_memory_total_bytes", "GPU memory in all", labels=labels
            ),
            "temperature": GaugeMetricFamily(
                "aiplatform_gpu_temperature_celsius", "GPU temperature", labels=labels
            ),
            "power_watts": GaugeMetricFamily(
                "aiplatform_gpu_power_watts", "GPU power draw", labels=labels
            ),
        }
        busy = GaugeMetricFamily(
            "aiplatform_gpu_running_job",
            "Whether a training job runs on the GPU (1) or not (0)",
            labels=labels,
        )
        for gpu in figures.gpus:
            values = [gpu.host, str(gpu.index), gpu.name or ""]
            for attribute, family in families.items():
                reading = getattr(gpu, attribute)
                if reading is not None:  # a device that does not report it
                    family.add_metric(values, reading)
            busy.add_metric(values, 0 if gpu.job_id is None else 1)
        yield from families.values()
        yield busy


class ApiMetrics:
    """The metrics one API app exposes at `/metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aiplatform_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aiplatform_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "aiplatform_http_requests_in_flight",
            "Requests being answered now",
            registry=self.registry,
        )
        self._figures = _FiguresCollector()
        self.registry.register(self._figures)
        self._read_at = -FIGURES_TTL_S
        self._reading = asyncio.Lock()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    async def refresh(self, read: Callable[[], Awaitable[PlatformFigures]]) -> None:
        """Reads the platform's figures unless a read younger than `FIGURES_TTL_S` exists;
        concurrent scrapes wait for one read."""
        async with self._reading:
            if time.monotonic() - self._read_at < FIGURES_TTL_S:
                return
            self._figures.figures = await read()
            self._read_at = time.monotonic()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
