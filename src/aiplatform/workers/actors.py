"""The actors. Import only after `configure_broker` (the `entrypoint` module does both)."""

from __future__ import annotations

import logging

import dramatiq

from aiplatform.domain.jobs import MAX_ATTEMPTS, MAX_TIME_LIMIT_S
from aiplatform.inference.replies import RUN_INFERENCE
from aiplatform.projectors.rebuild import worker_read_models
from aiplatform.training_queue import RETRY_MAX_BACKOFF_MS, RETRY_MIN_BACKOFF_MS, RUN_TRAINING_JOB
from aiplatform.workers.broker import PROJECT_READ_MODELS
from aiplatform.workers.datasets import REPORT_QUALITY, report_quality
from aiplatform.workers.inference import answer
from aiplatform.workers.maintenance import (
    CLEAN_UP,
    DISPATCH_TRAINING,
    clean_up_work_dirs,
    dispatch_training,
)
from aiplatform.workers.resources import worker_resources
from aiplatform.workers.training import RetryableTrainingError, run_claimed_job
from aiplatform.workers.waker import wake_gate_key

log = logging.getLogger(__name__)


@dramatiq.actor(actor_name=REPORT_QUALITY, queue_name="data", max_retries=3, time_limit=3_600_000)
async def report_dataset_quality(dataset_id: str, version: str) -> None:
    resources = await worker_resources()
    recorded = await report_quality(
        resources.store, resources.blobs, dataset_id, version, causation_id=None
    )
    if recorded:
        await resources.wake_projector()


@dramatiq.actor(
    actor_name=PROJECT_READ_MODELS, queue_name="projector", max_retries=0, time_limit=300_000
)
async def project_read_models() -> None:
    """Catches every read model up (and starts building changed ones beside them). Safe to run
    twice at once: the checkpoint lock lets one in."""
    resources = await worker_resources()
    await resources.cache.delete(wake_gate_key(resources.cache))
    read_models = worker_read_models(
        resources.pool, resources.cache, resources.settings.projector_batch_size
    )
    await read_models.project_live()


def _worth_retrying(retries: int, error: BaseException) -> bool:
    """Only failures that can pass are retried. The job's own attempt count (its events)
    decides when to give up, and fails the job then; this bound is only a backstop."""
    return isinstance(error, RetryableTrainingError) and retries < MAX_ATTEMPTS


@dramatiq.actor(
    actor_name=RUN_TRAINING_JOB,
    queue_name="training",
    min_backoff=RETRY_MIN_BACKOFF_MS,
    max_backoff=RETRY_MAX_BACKOFF_MS,
    retry_when=_worth_retrying,
    # Each job enforces its own time limit (JobSubmitted.time_limit_s); this is only a backstop.
    time_limit=(MAX_TIME_LIMIT_S + 3_600) * 1_000,
)
async def run_training_job(token: str) -> None:
    await run_claimed_job(await worker_resources(), token)


@dramatiq.actor(actor_name=DISPATCH_TRAINING, queue_name="maintenance", max_retries=0)
async def dispatch_training_jobs() -> None:
    await dispatch_training(await worker_resources())


@dramatiq.actor(actor_name=CLEAN_UP, queue_name="maintenance", max_retries=0)
async def clean_up_finished_jobs() -> None:
    removed = await clean_up_work_dirs(await worker_resources())
    if removed:
        log.info("removed the work directories of %d finished job(s)", len(removed))


@dramatiq.actor(actor_name=RUN_INFERENCE, queue_name="inference", max_retries=0, time_limit=600_000)
async def run_inference(request: dict[str, object]) -> None:
    """Not retried: the caller waits seconds, not minutes; a failure is answered as one."""
    await answer(await worker_resources(), request)
