"""A training job as it was at some point of its history (`GET training/jobs/{id}?as_of=`).

The present comes from the jobs read model; a past state is folded here from the job's stream
into the same view, field by field as the jobs projector fills its row, so that a client reads
both the same way.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import msgspec

from aiplatform.domain import jobs as domain
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.queries.jobs import JobView


def past_job(events: list[RecordedEvent]) -> JobView | None:
    """The view after `events` (a job stream's first events, oldest first); None before the
    job was submitted."""
    if not events or not isinstance(events[0].event, domain.JobSubmitted):
        return None
    submitted = events[0].event
    job: dict[str, Any] = {
        "id": uuid.UUID(submitted.job_id),
        "project_id": uuid.UUID(submitted.project_id),
        "experiment_id": submitted.experiment_id,
        "name": submitted.name,
        "template": submitted.template,
        "dataset_id": submitted.dataset_id,
        "dataset_version": submitted.dataset_version,
        "base_model_id": submitted.base_model_id,
        "hyperparameters": submitted.hyperparameters,
        "priority": submitted.priority,
        "time_limit_s": submitted.time_limit_s,
        "status": "pending",
        "attempt": 0,
        "cancel_requested": False,
        "retry_reason": None,
        "step": 0,
        "epoch": 0,
        "total_steps": None,
        "samples_per_second": None,
        "latest_metrics": {},
        "checkpoint_step": None,
        "checkpoint_epoch": None,
        "checkpoint_path": None,
        "worker": None,
        "devices": [],
        "model_id": None,
        "error": None,
        "traceback": None,
        "metrics": None,
        "duration_s": None,
        "resource_usage": None,
        "log_lines": 0,
        "submitted_by": events[0].metadata.actor,
        "submitted_at": events[0].recorded_at,
        "started_at": None,
        "finished_at": None,
    }
    for recorded in events[1:]:
        _apply(job, recorded)
    job["progress"] = 1.0 if job["status"] == "succeeded" else _progress(job)
    job["updated_at"] = events[-1].recorded_at
    job["version"] = events[-1].stream_version
    return msgspec.convert(job, JobView)


def _progress(job: dict[str, Any]) -> float:
    total = job["total_steps"] or 0
    return min(1.0, max(0.0, job["step"] / total)) if total > 0 else 0.0


def _apply(job: dict[str, Any], recorded: RecordedEvent) -> None:
    at = recorded.recorded_at
    match recorded.event:
        case domain.JobStarted() as event:
            resumed = event.resumed_from_step
            if resumed is None:
                job["epoch"] = 0
            elif job["checkpoint_step"] == resumed:
                job["epoch"] = job["checkpoint_epoch"]
            job.update(
                status="running",
                attempt=event.attempt,
                worker=event.worker,
                devices=event.devices,
                started_at=at,
                samples_per_second=None,
                step=resumed or 0,
            )
        case domain.JobProgressed() as event:
            job.update(step=event.step, epoch=event.epoch, total_steps=event.total_steps)
            if event.samples_per_second is not None:
                job["samples_per_second"] = event.samples_per_second
        case domain.MetricsRecorded() as event:
            for name, series in event.series.items():
                if series.values:
                    value = series.values[-1]
                    job["latest_metrics"][name] = value if math.isfinite(value) else None
        case domain.JobLogged() as event:
            job["log_lines"] += len(event.lines)
        case domain.JobCheckpointed() as event:
            job.update(
                checkpoint_step=event.step, checkpoint_epoch=event.epoch, checkpoint_path=event.path
            )
        case domain.JobRetried() as event:
            job.update(
                status="pending",
                attempt=event.attempt - 1,
                retry_reason=event.reason,
                samples_per_second=None,
            )
        case domain.JobCancelRequested():
            job["cancel_requested"] = True
        case domain.JobCancelled() as event:
            job.update(status="cancelled", finished_at=at)
            if event.step is not None:
                job["step"] = event.step
        case domain.JobSucceeded() as event:
            job.update(
                status="succeeded",
                finished_at=at,
                model_id=event.model_id,
                metrics=event.metrics,
                duration_s=event.duration_s,
                resource_usage=event.resource_usage,
            )
        case domain.JobFailed() as event:
            job.update(
                status="failed", finished_at=at, error=event.error, traceback=event.traceback
            )
