"""The scheduler: one process that sends the platform's periodic messages.

Run exactly one. The projector tick makes a lost wake-up cost a second of lag, never an event;
the training dispatch makes a lost training token cost half a minute, never a job; the daily
cleanup removes finished jobs' work directories.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from aiplatform.workers.broker import projector_wake_up
from aiplatform.workers.maintenance import CLEAN_UP, DISPATCH_TRAINING, maintenance_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicMessage:
    name: str
    interval_s: float
    message: Callable[[], Message[None]]


PERIODIC = (
    PeriodicMessage("projector tick", 1.0, lambda: projector_wake_up(max_age_ms=2_000)),
    PeriodicMessage("training dispatch", 30.0, lambda: maintenance_message(DISPATCH_TRAINING)),
    # Daily, and once at start: a scheduler restarted every few hours still cleans up.
    PeriodicMessage("cleanup", 24 * 3_600.0, lambda: maintenance_message(CLEAN_UP)),
)


def run_scheduler(broker: RedisBroker, stop: threading.Event) -> None:
    """Sends each periodic message on its interval until `stop` is set."""
    next_due = {periodic.name: 0.0 for periodic in PERIODIC}
    while not stop.is_set():
        now = time.monotonic()
        for periodic in PERIODIC:
            if now >= next_due[periodic.name]:
                next_due[periodic.name] = now + periodic.interval_s
                try:
                    broker.enqueue(periodic.message())
                except Exception as error:  # Redis away: keep ticking, it will come back
                    log.warning("could not send %s: %s", periodic.name, error)
        stop.wait(max(0.0, min(next_due.values()) - time.monotonic()))
