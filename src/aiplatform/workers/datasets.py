"""Quality reports: computed on the `data` queue after each dataset version is committed."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from dramatiq import Message

from aiplatform.aggregates import DATASETS
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.datasets.formats import Format
from aiplatform.datasets.quality import analyze
from aiplatform.domain import datasets
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.store import EventStore
from aiplatform.storage import BlobStore

log = logging.getLogger(__name__)

REPORT_QUALITY = "report_dataset_quality"


def quality_request(dataset_id: str, version: str) -> Message[None]:
    return Message(
        queue_name="data",
        actor_name=REPORT_QUALITY,
        args=(dataset_id, version),
        kwargs={},
        options={},
    )


async def report_quality(
    store: EventStore, blobs: BlobStore, dataset_id: str, version: str, causation_id: str | None
) -> bool:
    """Analyses one version and records its report. Safe to run twice: a version that has a
    report already is left alone. Returns whether a report was recorded."""
    handler = CommandHandler(store)
    dataset = await handler.current_state(DATASETS, dataset_id)
    if dataset is None or dataset.deleted or version not in dataset.versions:
        log.warning("no dataset %s version %s to report on", dataset_id, version)
        return False
    committed = dataset.versions[version]
    if committed.report is not None:
        return False
    async with blobs.local_copy(committed.blob_key) as path:
        fmt: Format = msgspec.convert(committed.format, Format)
        report = await asyncio.to_thread(analyze, path, fmt)
    command = datasets.RecordQuality(
        dataset_id=dataset_id, version=version, report=msgspec.to_builtins(report)
    )
    metadata = EventMetadata(actor="system:data-worker", causation_id=causation_id)
    result = await handler.handle(DATASETS, dataset_id, command, CommandContext(metadata=metadata))
    return result.position is not None
