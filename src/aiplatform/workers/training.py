"""Running one training job on this worker: claim it, start the trainer, turn its JSON lines
into job events, and finish the job — registered model, failure, cancel or retry.

Progress, metrics and log lines are buffered and appended together at most every
`FLUSH_INTERVAL_S`, however fast the trainer reports; a checkpoint is appended at once (it is
what a retry resumes from). Lifecycle changes go through the job aggregate's `decide`, so a
redelivered message can never reopen a finished job or register its model twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import msgspec

from aiplatform import training_queue
from aiplatform.aggregates import DATASETS, EXPERIMENTS, JOBS, MODELS
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.domain import experiments, jobs, models
from aiplatform.domain.jobs import Job, LogLine, MetricSeries
from aiplatform.eventstore.codec import Event, EventMetadata
from aiplatform.model_registration import register_model
from aiplatform.monitoring.devices import assign, release
from aiplatform.monitoring.usage import gpu_usage
from aiplatform.workers.resources import WorkerResources
from aiplatform.workers.trainer_process import (
    Exit,
    TrainerProcess,
    Usage,
    launch_plan,
    stop_trainers,
)

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
# Model ids of trained models derive from their job's id: a job registers one model, however
# often its last step is retried.
_MODEL_NAMESPACE = uuid.UUID("5b0c2f57-6d1c-4d8e-9d3e-3f1f8a0c9e21")
WORKER_ACTOR = "system:training-worker"


class StopTrainersOnShutdown(dramatiq.Middleware):
    """A worker process told to stop (SIGTERM: a deploy, a scale-down, a drained node) asks
    its trainers to save a checkpoint and stop while Dramatiq waits for its threads
    (`--shutdown-timeout`); each job is then retried, and another worker resumes it from that
    checkpoint instead of waiting out the heartbeat timeout and losing the steps since the last
    periodic one."""

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        asked = stop_trainers()
        if asked:
            log.info("asked %d trainer(s) to checkpoint and stop", asked)


class RetryableTrainingError(Exception):
    """The attempt failed for a reason that may pass (a crash, a lost connection); Dramatiq
    retries the message with backoff, and the retry resumes from the last checkpoint."""


def trained_model_id(job_id: str) -> str:
    return str(uuid.uuid5(_MODEL_NAMESPACE, job_id))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Batch:
    """What the trainer reported since the last flush."""

    progress: jobs.JobProgressed | None = None
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    lines: list[LogLine] = field(default_factory=list)

    def events(self, job_id: str) -> list[Event]:
        events: list[Event] = []
        if self.series:
            series = {
                name: MetricSeries(steps=steps, values=values)
                for name, (steps, values) in self.series.items()
            }
            events.append(jobs.MetricsRecorded(job_id=job_id, series=series))
        if self.lines:
            events.append(jobs.JobLogged(job_id=job_id, lines=self.lines))
        if self.progress is not None:
            events.append(self.progress)
        return events


@dataclass
class _Outcome:
    completed: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    devices: list[str] = field(default_factory=list)
    samples_per_second: float | None = None
    interrupted: bool = False


class TrainingRun:
    def __init__(self, resources: WorkerResources, job: Job, causation_id: str | None = None):
        self.resources = resources
        self.job = job
        self.handler = CommandHandler(resources.store)
        self.context = CommandContext(
            metadata=EventMetadata(actor=WORKER_ACTOR, causation_id=causation_id)
        )
        self.stream = jobs.stream_id(job.job_id)
        self.work_dir = resources.settings.data_dir / "jobs" / job.job_id
        self._batch = _Batch()
        self._last_flush = 0.0
        self._outcome = _Outcome()
        self._started_at = time.monotonic()
        self._started_wall = time.time()  # GPU samples are stamped with wall-clock time
        self._usage = Usage()
        # The trainer's lines and the watcher's timer both append: one at a time, in order.
        self._appending = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def _decide(self, command: jobs.JobCommand) -> Job:
        async with self._appending:
            result = await self.handler.handle(JOBS, self.job.job_id, command, self.context)
        assert result.state is not None
        self.job = result.state
        if result.position is not None:
            await self.resources.wake_projector()
        return self.job

    async def run(self) -> None:
        """Runs the attempt to its end. Raises RetryableTrainingError when Dramatiq should
        retry the message."""
        pool = self.resources.pool
        try:
            exit_ = await self._train()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # Our side failed (database, blob store...): worth another attempt.
            log.exception("training job %s: attempt failed", self.job.job_id)
            await self._retry_or_fail(f"{type(error).__name__}: {error}")
            return
        if self.job.finished:
            pass
        elif exit_.stopped_by == "cancel":
            await self._decide(jobs.ConfirmCancelled(job_id=self.job.job_id))
        elif exit_.stopped_by == "time limit":
            await self._decide(
                jobs.FailJob(
                    job_id=self.job.job_id,
                    error=f"the job exceeded its time limit of {self.job.time_limit_s} s",
                )
            )
        elif self._outcome.completed is not None and exit_.returncode == 0:
            await self._succeed(self._outcome.completed)
        elif self._outcome.error is not None:
            await self._decide(
                jobs.FailJob(
                    job_id=self.job.job_id,
                    error=str(self._outcome.error.get("error", "the trainer failed")),
                    traceback=self._outcome.error.get("traceback"),
                )
            )
        elif self._outcome.interrupted:
            await self._retry_or_fail("the trainer was stopped and saved a checkpoint")
            return
        else:
            reason = f"the trainer exited with code {exit_.returncode} without a result"
            if exit_.stderr_tail.strip():
                reason += f"; its last output: {exit_.stderr_tail.strip()[-500:]}"
            await self._retry_or_fail(reason)
            return
        await self._finished()
        if self.job.finished:
            await training_queue.release(pool, self.job.job_id)

    async def _retry_or_fail(self, reason: str) -> None:
        job = await self._decide(jobs.RetryJob(job_id=self.job.job_id, reason=reason))
        if job.finished:  # out of attempts
            await self._finished()
            await training_queue.release(self.resources.pool, job.job_id)
            return
        raise RetryableTrainingError(reason)

    async def _finished(self) -> None:
        """Tells the job's experiment how it ended; removes what only a retry would need."""
        job = self.job
        if not job.finished:
            return
        if job.status == "succeeded":
            shutil.rmtree(self.work_dir, ignore_errors=True)
        if job.experiment_id is None:
            return
        status = {"succeeded": "completed", "failed": "failed", "cancelled": "cancelled"}
        metrics = {}
        if self._outcome.completed is not None:
            metrics = finite_numbers(self._outcome.completed.get("metrics", {}))
        await self.handler.handle(
            EXPERIMENTS,
            job.experiment_id,
            experiments.FinishExperiment(
                experiment_id=job.experiment_id,
                status=status[job.status],  # type: ignore[arg-type]
                metrics=metrics,
            ),
            self.context,
        )

    # -- the trainer -----------------------------------------------------------------------

    async def _train(self) -> Exit:
        settings = self.resources.settings
        self.work_dir.mkdir(parents=True, exist_ok=True)
        async with AsyncExitStack() as stack:
            dataset_path, dataset_format = await stack.enter_async_context(self._dataset())
            base_model_path = await stack.enter_async_context(self._base_model())
            spec = {
                "job_id": self.job.job_id,
                "template": self.job.template,
                "hyperparameters": self.job.hyperparameters,
                "dataset_path": str(dataset_path),
                "dataset_format": dataset_format,
                "work_dir": str(self.work_dir),
                "resume_from": await self._resume_from(),
                "base_model_path": str(base_model_path) if base_model_path else None,
            }
            spec_path = self.work_dir / "spec.json"
            spec_path.write_text(json.dumps(spec, indent=2))
            plan = launch_plan(settings.accelerate_args)
            self._outcome.devices = plan.devices
            await self._decide(
                jobs.StartAttempt(
                    job_id=self.job.job_id, worker=worker_name(), devices=plan.devices
                )
            )
            if self.job.status != "running":  # cancelled while its inputs were fetched
                return Exit(returncode=0, stopped_by="cancel", stderr_tail="")
            # The GPU monitor labels these devices' samples with the job while it runs.
            assign(plan.devices, self.job.job_id)
            stack.callback(release, self.job.job_id)
            process = TrainerProcess(
                spec_path=spec_path,
                stderr_path=self.work_dir / "trainer.log",
                accelerate=plan.accelerate,
                time_limit_s=self.job.time_limit_s,
                soft_warning=self._warn_time_limit,
                should_stop=self._should_stop,
                usage=self._usage,
            )
            exit_ = await process.run(self._on_line)
            await self._flush()
            return exit_

    async def _resume_from(self) -> str | None:
        checkpoint = self.job.checkpoint
        if checkpoint is None:
            return None
        if await asyncio.to_thread(Path(checkpoint.path).is_dir):
            return checkpoint.path
        self._batch.lines.append(
            _line(
                "warning",
                f"checkpoint of step {checkpoint.step} is not on this worker "
                f"({checkpoint.path}); training starts over",
            )
        )
        return None

    @asynccontextmanager
    async def _dataset(self) -> AsyncIterator[tuple[Path, str]]:
        dataset = await self.handler.current_state(DATASETS, self.job.dataset_id)
        if dataset is None or self.job.dataset_version not in dataset.versions:
            raise LookupError(f"dataset {self.job.dataset_id} {self.job.dataset_version} is gone")
        committed = dataset.versions[self.job.dataset_version]
        async with self.resources.blobs.local_copy(committed.blob_key) as path:
            yield path, str(committed.format)

    @asynccontextmanager
    async def _base_model(self) -> AsyncIterator[Path | None]:
        if self.job.base_model_id is None:
            yield None
            return
        artifact_key = await _artifact_key(self.resources, self.job.base_model_id)
        async with self.resources.blobs.local_copy(artifact_key) as path:
            yield path

    async def _should_stop(self) -> bool:
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            await self._flush()
        return await training_queue.cancel_requested(self.resources.pool, self.job.job_id)

    async def _warn_time_limit(self, remaining_s: float) -> None:
        self._batch.lines.append(
            _line(
                "warning",
                f"the job will be stopped in {remaining_s:.0f} s: its time limit is "
                f"{self.job.time_limit_s} s",
            )
        )

    async def _on_line(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        job_id = self.job.job_id
        if kind == "started":
            resumed = message.get("resumed_from_step")
            self._batch.lines.append(
                _line(
                    "info",
                    f"training {message.get('total_steps')} steps "
                    f"({message.get('epochs')} epochs of {message.get('steps_per_epoch')}) on "
                    f"{', '.join(self._outcome.devices)}, {message.get('parameters')} parameters"
                    + (f", resumed after step {resumed}" if resumed else ""),
                )
            )
        elif kind == "progress":
            self._batch.progress = jobs.JobProgressed(
                job_id=job_id,
                step=int(message["step"]),
                epoch=int(message.get("epoch", 0)),
                total_steps=int(message.get("total_steps", 0)),
                samples_per_second=message.get("samples_per_second"),
            )
        elif kind == "metrics":
            step = int(message["step"])
            for name, value in finite_numbers(message.get("values", {})).items():
                steps, values = self._batch.series.setdefault(name, ([], []))
                steps.append(step)
                values.append(value)
        elif kind == "log":
            level = str(message.get("level", "info"))
            self._batch.lines.append(_line(level, str(message.get("message", ""))))
        elif kind == "checkpoint":
            await self._flush(
                jobs.JobCheckpointed(
                    job_id=job_id,
                    step=int(message["step"]),
                    epoch=int(message.get("epoch", 0)),
                    path=str(message["path"]),
                )
            )
        elif kind == "completed":
            self._outcome.completed = message
            self._outcome.samples_per_second = message.get("samples_per_second")
        elif kind == "error":
            self._outcome.error = message
            self._batch.lines.append(_line("error", str(message.get("error", ""))))
        elif kind == "interrupted":
            self._outcome.interrupted = True
            self._batch.lines.append(
                _line("warning", f"stopped at step {message.get('step')} to be resumed")
            )
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            await self._flush()

    async def _flush(self, *also: Event) -> None:
        """Appends what the trainer reported since the last flush, then `also`."""
        async with self._appending:
            self._last_flush = time.monotonic()
            events = [*self._batch.events(self.job.job_id), *also]
            self._batch = _Batch()
            if events:
                await self.handler.record(self.stream, events, self.context)

    # -- success ---------------------------------------------------------------------------

    async def _succeed(self, completed: dict[str, Any]) -> None:
        job = self.job
        if await training_queue.cancel_requested(self.resources.pool, job.job_id):
            await self._decide(jobs.ConfirmCancelled(job_id=job.job_id))
            return
        metrics = finite_numbers(completed.get("metrics", {}))
        model_id = trained_model_id(job.job_id)
        artifact = Path(str(completed["artifact_path"]))
        key = f"models/{model_id}/artifact"
        blob = await self.resources.blobs.put_stream(
            key, _file_chunks(artifact), max_bytes=self.resources.settings.max_upload_bytes
        )
        dataset_id, dataset_version = job.dataset_id, job.dataset_version
        card = models.ModelCard(
            description=f"A {job.template} model trained by job {job.job_id}.",
            training_dataset_id=dataset_id,
            training_dataset_version=dataset_version,
            metrics=metrics,
            template=job.template,
            hyperparameters=job.hyperparameters,
            training_job_id=job.job_id,
        )
        await register_model(
            self.handler,
            models.RegisterModel(
                model_id=model_id,
                project_id=job.project_id,
                name=job.name,
                framework="safetensors",
                artifact_key=blob.key,
                size=blob.size,
                sha256=blob.sha256,
                metrics=metrics,
                source_job_id=job.job_id,
                card=card,
            ),
            self.context,
        )
        usage = self._usage
        gpu = await gpu_usage(self.resources.cache, self._outcome.devices, self._started_wall)
        await self._decide(
            jobs.SucceedJob(
                job_id=job.job_id,
                model_id=model_id,
                metrics=metrics,
                duration_s=round(time.monotonic() - self._started_at, 3),
                resource_usage={
                    "devices": self._outcome.devices,
                    "peak_memory_bytes": usage.peak_memory_bytes,
                    "cpu_seconds": round(usage.cpu_seconds, 3),
                    "samples_per_second": self._outcome.samples_per_second,
                    "gpu": msgspec.to_builtins(gpu) if gpu is not None else None,
                },
            )
        )


async def run_claimed_job(resources: WorkerResources, token: str) -> None:
    """The training actor's body: claim a job with this token and run it."""
    claimed = await training_queue.claim(resources.pool, token)
    if claimed is None:
        return
    job_id, redelivered = claimed
    handler = CommandHandler(resources.store)
    job = await handler.current_state(JOBS, job_id)
    if job is None or job.finished:
        await training_queue.release(resources.pool, job_id)
        return
    run = TrainingRun(resources, job, causation_id=token)
    if job.cancel_requested:
        await run._decide(jobs.ConfirmCancelled(job_id=job_id))
        await run._finished()
        await training_queue.release(resources.pool, job_id)
        return
    if redelivered and job.status == "running":
        # The message came back because the worker that ran it died mid-job.
        await run._decide(
            jobs.RetryJob(
                job_id=job_id, reason="the worker running the job stopped before it finished"
            )
        )
        if run.job.finished:  # that was its last attempt
            await run._finished()
            await training_queue.release(resources.pool, job_id)
            return
    await run.run()


def _line(level: str, message: str) -> LogLine:
    return LogLine(time=time.time(), level=level, message=message)


def finite_numbers(values: Any) -> dict[str, float]:
    """The finite numbers of a reported metrics object: JSON has no NaN or infinity, so an
    event carrying one could not be read back."""
    if not isinstance(values, dict):
        return {}
    return {
        str(name): float(value)
        for name, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


async def _file_chunks(path: Path, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, chunk_size):
            yield chunk


async def _artifact_key(resources: WorkerResources, model_id: str) -> str:
    row = await resources.pool.fetchrow(
        "SELECT project_id, name FROM model_index WHERE model_id = $1", uuid.UUID(model_id)
    )
    if row is None:
        raise LookupError(f"base model {model_id} is not registered")
    line = await CommandHandler(resources.store).current_state(
        MODELS, models.line_of(str(row["project_id"]), row["name"])
    )
    if line is None or model_id not in line.versions:
        raise LookupError(f"base model {model_id} is not registered")
    return line.versions[model_id].artifact_key
