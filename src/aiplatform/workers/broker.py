"""The Dramatiq broker, built from settings before any actor is declared.

Queues (DESIGN.md): `projector` and `inference` are latency-sensitive; the rest carry heavy or
periodic work. The API does not import actors: it enqueues messages by actor name, so a web
process never needs the ML stack.
"""

from __future__ import annotations

import dramatiq
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO

from aiplatform.cache import key_prefix
from aiplatform.config import Settings
from aiplatform.workers.doorbell import DoorbellRedisBroker
from aiplatform.workers.expiry import DropExpired, expiring
from aiplatform.workers.monitoring import MonitoringMiddleware

QUEUES = ("projector", "training", "inference", "data", "notification", "monitoring", "maintenance")
# Queues whose idle consumers wait on a doorbell rather than poll (see `doorbell`).
LATENCY_QUEUES = ("projector", "inference")

# Redis hands a dead worker's unacknowledged messages back after this long. Dramatiq's 60 s
# default would stall the projector for a minute after a crash; workers beat every few seconds.
HEARTBEAT_TIMEOUT_MS = 15_000
# Each broker command has this chance in a million of doing the maintenance that requeues a dead
# worker's messages. An idle consumer sends about one command a second, so Dramatiq's default
# (1,000) leaves a killed training job's message parked for many minutes; at a quarter, another
# worker takes it over a few seconds after the heartbeat timeout. When no worker is dead, the
# check is one sorted-set range query.
MAINTENANCE_CHANCE = 250_000

PROJECT_READ_MODELS = "project_read_models"


def build_broker(settings: Settings) -> RedisBroker:
    namespace = (
        f"aiplatform-dramatiq-{settings.instance}" if settings.instance else "aiplatform-dramatiq"
    )
    broker = DoorbellRedisBroker(
        doorbell_queues=frozenset(LATENCY_QUEUES),
        url=settings.require_redis_url(),
        namespace=namespace,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    broker.add_middleware(AsyncIO())
    broker.add_middleware(DropExpired())
    # Every worker process reports its CPU and memory, and its host's GPUs (one per host).
    broker.add_middleware(MonitoringMiddleware(broker.client, key_prefix(settings.instance)))
    return broker


def configure_broker(settings: Settings) -> RedisBroker:
    """Makes the platform's broker the global one; call before importing the actors."""
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    return broker


def projector_wake_up(max_age_ms: int = 10_000) -> Message[None]:
    """A message that makes a projector worker catch every read model up. Wake-ups that wait
    longer than `max_age_ms` are dropped: a later one does the same work."""
    return Message(
        queue_name="projector",
        actor_name=PROJECT_READ_MODELS,
        args=(),
        kwargs={},
        options=expiring(max_age_ms),
    )
