"""Periodic housekeeping the scheduler sends to the `maintenance` queue.

- Training dispatch: a job whose token was lost (Redis unreachable right after its submission
  committed) waits in the training queue with no message to run it; this sends tokens for
  waiting jobs that the `training` queue holds too few for.
- Cleanup: the work directories (checkpoints, logs) of jobs finished more than
  `WORK_DIR_RETENTION_S` ago. A succeeded job's directory is removed at once by its worker;
  failed and cancelled ones are kept a while for a post-mortem.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import dramatiq
from dramatiq import Message

from aiplatform import training_queue
from aiplatform.aggregates import JOBS
from aiplatform.commands import CommandHandler
from aiplatform.workers.expiry import expiring
from aiplatform.workers.resources import WorkerResources

log = logging.getLogger(__name__)

DISPATCH_TRAINING = "dispatch_training_jobs"
CLEAN_UP = "clean_up_finished_jobs"
# A token is normally enqueued within milliseconds of its job's row; older rows lack one.
TOKEN_GRACE_S = 30.0
WORK_DIR_RETENTION_S = 7 * 24 * 3_600


def maintenance_message(actor_name: str) -> Message[None]:
    return Message(
        queue_name="maintenance",
        actor_name=actor_name,
        args=(),
        kwargs={},
        options=expiring(60_000),
    )


async def dispatch_training(resources: WorkerResources) -> int:
    """Sends the tokens that waiting jobs lack; returns how many."""
    waiting = await training_queue.waiting_jobs(resources.pool, older_than_s=TOKEN_GRACE_S)
    if waiting == 0:
        return 0
    broker = dramatiq.get_broker()
    queued = int(await asyncio.to_thread(broker.do_qsize, "training"))  # type: ignore[attr-defined]
    missing = max(0, waiting - queued)
    for _ in range(missing):
        await asyncio.to_thread(broker.enqueue, training_queue.training_token())
    if missing:
        log.warning("%d waiting training job(s) had no token; sent new ones", missing)
    return missing


async def clean_up_work_dirs(resources: WorkerResources) -> list[str]:
    """Removes the work directories of jobs finished long enough ago; returns their job ids."""
    root = resources.settings.data_dir / "jobs"
    if not await asyncio.to_thread(root.is_dir):
        return []
    handler = CommandHandler(resources.store)
    removed = []
    cutoff = time.time() - WORK_DIR_RETENTION_S
    for directory in await asyncio.to_thread(lambda: sorted(root.iterdir())):
        if await asyncio.to_thread(_modified, directory) > cutoff:
            continue
        job = await handler.current_state(JOBS, directory.name)
        if job is not None and not job.finished:
            continue  # a long job, or one waiting to be retried: its checkpoint is needed
        await asyncio.to_thread(shutil.rmtree, directory, True)
        removed.append(directory.name)
    return removed


def _modified(path: Path) -> float:
    """The newest modification time of the directory's own entries (a running job writes
    checkpoints into subdirectories, which touches them)."""
    latest = path.stat().st_mtime
    for child in path.iterdir():
        latest = max(latest, child.stat().st_mtime)
    return latest
