"""The training job aggregate: stream `job-<id>`.

Lifecycle: pending → running → succeeded | failed | cancelled. A running job whose worker dies,
or that hits a failure worth retrying, goes back through `JobRetried` and starts again from its
last checkpoint. Progress, metrics and log lines are facts the training actor records in
batches without deciding (they never change the lifecycle), so the stream can grow with a
long run without every progress report re-reading it.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from aiplatform.domain.errors import AlreadyExistsError, InvalidStateError, NotFoundError
from aiplatform.eventstore.codec import Event, upcaster

JobStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
Accelerator = Literal["cpu", "cuda"]
TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})

PRIORITIES: Final = (0, 1, 5, 9)  # critical, high, normal, low
DEFAULT_PRIORITY: Final = 5
DEFAULT_TIME_LIMIT_S: Final = 3_600
MAX_TIME_LIMIT_S: Final = 7 * 24 * 3_600
# The first run plus at most three retries.
MAX_ATTEMPTS: Final = 4


def stream_id(job_id: str) -> str:
    return f"job-{job_id}"


class JobSubmitted(Event, frozen=True):
    job_id: str
    project_id: str
    job_type: Literal["training"]
    name: str  # the name the trained model is registered under
    template: str
    dataset_id: str
    dataset_version: str
    base_model_id: str | None
    hyperparameters: dict[str, Any]
    priority: int
    time_limit_s: int
    experiment_id: str | None = None


class JobStarted(Event, frozen=True):
    """v2 added `accelerator`, so that GPU time can be counted without parsing device names."""

    schema_version = 2

    job_id: str
    attempt: int
    worker: str
    devices: list[str]
    accelerator: Accelerator
    resumed_from_step: int | None = None


def accelerator_of(devices: list[str]) -> Accelerator:
    """Training runs either on NVIDIA GPUs (`cuda:<n>`) or on the CPU (`cpu`)."""
    return "cuda" if any(device.startswith("cuda") for device in devices) else "cpu"


@upcaster("JobStarted", from_version=1)
def _job_started_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # v1 recorded only the device names, from which the accelerator follows exactly.
    return {**data, "accelerator": accelerator_of(data["devices"])}


class JobProgressed(Event, frozen=True):
    job_id: str
    step: int
    epoch: int
    total_steps: int
    samples_per_second: float | None = None


class MetricSeries(msgspec.Struct, frozen=True, kw_only=True):
    steps: list[int]
    values: list[float]


class MetricsRecorded(Event, frozen=True):
    """Every metric reported since the previous batch, as parallel arrays per metric name."""

    job_id: str
    series: dict[str, MetricSeries]


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    time: float  # seconds since the epoch, when the trainer wrote it
    level: str
    message: str


class JobLogged(Event, frozen=True):
    job_id: str
    lines: list[LogLine]


class JobCheckpointed(Event, frozen=True):
    job_id: str
    step: int
    epoch: int
    path: str


class JobRetried(Event, frozen=True):
    job_id: str
    attempt: int  # the attempt about to start
    reason: str


class JobCancelRequested(Event, frozen=True):
    job_id: str


class JobCancelled(Event, frozen=True):
    job_id: str
    step: int | None


class JobSucceeded(Event, frozen=True):
    job_id: str
    model_id: str
    metrics: dict[str, float]
    duration_s: float
    resource_usage: dict[str, Any]


class JobFailed(Event, frozen=True):
    job_id: str
    error: str
    traceback: str | None
    attempt: int


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    step: int
    epoch: int
    path: str


class Job(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    project_id: str
    name: str
    template: str
    dataset_id: str
    dataset_version: str
    base_model_id: str | None
    hyperparameters: dict[str, Any]
    priority: int
    time_limit_s: int
    experiment_id: str | None
    status: JobStatus = "pending"
    attempt: int = 0
    cancel_requested: bool = False
    step: int = 0
    total_steps: int | None = None
    checkpoint: Checkpoint | None = None
    model_id: str | None = None
    error: str | None = None
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def evolve(state: Job | None, event: Event) -> Job | None:
    if isinstance(event, JobSubmitted):
        return Job(
            job_id=event.job_id,
            project_id=event.project_id,
            name=event.name,
            template=event.template,
            dataset_id=event.dataset_id,
            dataset_version=event.dataset_version,
            base_model_id=event.base_model_id,
            hyperparameters=event.hyperparameters,
            priority=event.priority,
            time_limit_s=event.time_limit_s,
            experiment_id=event.experiment_id,
            version=1,
        )
    if state is None:
        return None
    replace = msgspec.structs.replace
    version = state.version + 1
    match event:
        case JobStarted():
            return replace(state, version=version, status="running", attempt=event.attempt)
        case JobProgressed():
            return replace(state, version=version, step=event.step, total_steps=event.total_steps)
        case JobCheckpointed():
            checkpoint = Checkpoint(step=event.step, epoch=event.epoch, path=event.path)
            return replace(state, version=version, checkpoint=checkpoint)
        case JobRetried():
            return replace(state, version=version, status="pending", attempt=event.attempt - 1)
        case JobCancelRequested():
            return replace(state, version=version, cancel_requested=True)
        case JobCancelled():
            return replace(state, version=version, status="cancelled")
        case JobSucceeded():
            return replace(state, version=version, status="succeeded", model_id=event.model_id)
        case JobFailed():
            return replace(state, version=version, status="failed", error=event.error)
    return replace(state, version=version)


class SubmitJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    project_id: str
    name: str
    template: str
    dataset_id: str
    dataset_version: str
    base_model_id: str | None
    hyperparameters: dict[str, Any]
    priority: int = DEFAULT_PRIORITY
    time_limit_s: int = DEFAULT_TIME_LIMIT_S
    experiment_id: str | None = None


class StartAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """A worker started the job's trainer."""

    job_id: str
    worker: str
    devices: list[str]


class RetryJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    reason: str


class CancelJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


class ConfirmCancelled(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


class SucceedJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    model_id: str
    metrics: dict[str, float]
    duration_s: float
    resource_usage: dict[str, Any]


class FailJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    error: str
    traceback: str | None = None


JobCommand = (
    SubmitJob | StartAttempt | RetryJob | CancelJob | ConfirmCancelled | SucceedJob | FailJob
)


class JobNotFoundError(NotFoundError):
    def __init__(self, job_id: str):
        super().__init__(f"job {job_id} does not exist")


def _existing(state: Job | None, job_id: str) -> Job:
    if state is None:
        raise JobNotFoundError(job_id)
    return state


def decide(state: Job | None, command: JobCommand) -> list[Event]:
    """Commands from workers on a finished job decide nothing (a redelivered message must not
    reopen it); a user cancelling a finished job is told why not."""
    if isinstance(command, SubmitJob):
        if state is not None:
            raise AlreadyExistsError(f"job {command.job_id} already exists")
        return [JobSubmitted(job_type="training", **msgspec.structs.asdict(command))]
    job = _existing(state, command.job_id)
    if isinstance(command, CancelJob):
        if job.finished:
            raise InvalidStateError(f"job {job.job_id} is {job.status}; it cannot be cancelled")
        if job.status == "pending":
            return [JobCancelled(job_id=job.job_id, step=job.step or None)]
        return [] if job.cancel_requested else [JobCancelRequested(job_id=job.job_id)]
    if job.finished:
        return []
    match command:
        case StartAttempt():
            events: list[Event] = []
            if job.status == "running":
                # Started again without a recorded retry: the previous attempt was lost.
                events = decide(job, RetryJob(job_id=job.job_id, reason="a new attempt began"))
                if any(isinstance(event, JobFailed) for event in events):
                    return events
            elif job.attempt >= MAX_ATTEMPTS:
                return [
                    JobFailed(
                        job_id=job.job_id,
                        error=f"gave up after {MAX_ATTEMPTS} attempts",
                        traceback=None,
                        attempt=job.attempt,
                    )
                ]
            resumed = job.checkpoint.step if job.checkpoint is not None else None
            return [
                *events,
                JobStarted(
                    job_id=job.job_id,
                    attempt=job.attempt + 1,
                    worker=command.worker,
                    devices=command.devices,
                    accelerator=accelerator_of(command.devices),
                    resumed_from_step=resumed,
                ),
            ]
        case RetryJob():
            if job.attempt >= MAX_ATTEMPTS:
                return [
                    JobFailed(
                        job_id=job.job_id,
                        error=f"gave up after {MAX_ATTEMPTS} attempts; the last: {command.reason}",
                        traceback=None,
                        attempt=job.attempt,
                    )
                ]
            return [JobRetried(job_id=job.job_id, attempt=job.attempt + 1, reason=command.reason)]
        case ConfirmCancelled():
            return [JobCancelled(job_id=job.job_id, step=job.step or None)]
        case SucceedJob():
            if job.cancel_requested:
                return [JobCancelled(job_id=job.job_id, step=job.step or None)]
            return [
                JobSucceeded(
                    job_id=job.job_id,
                    model_id=command.model_id,
                    metrics=command.metrics,
                    duration_s=command.duration_s,
                    resource_usage=command.resource_usage,
                )
            ]
        case FailJob():
            return [
                JobFailed(
                    job_id=job.job_id,
                    error=command.error,
                    traceback=command.traceback,
                    attempt=job.attempt,
                )
            ]
    raise AssertionError(f"unhandled command {command!r}")
