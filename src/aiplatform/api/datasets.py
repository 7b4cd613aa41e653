"""/api/v2/datasets: versioned datasets, uploaded as multipart and streamed to the blob store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from aiplatform.aggregates import DATASETS
from aiplatform.api.as_of import AsOfParameter, as_of_meta, parse_as_of, past_events
from aiplatform.api.context import command_context
from aiplatform.api.envelope import After, Envelope, Limit, Page, ok, paginated
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import (
    FORM,
    Principal,
    ensure_active,
    provide_principal,
    require_active_project,
)
from aiplatform.api.history import HistoryEvent, history_page
from aiplatform.api.responses import write_response
from aiplatform.api.services import Services, provide_services
from aiplatform.api.uploads import Upload, receive_upload
from aiplatform.auth.permissions import DATASET_WRITE, PROJECT_READ
from aiplatform.cache import TTL_ASSET_INFO, VersionedEntry
from aiplatform.datasets.formats import (
    CONTENT_TYPES,
    Format,
    RowCounter,
    UnsupportedFormatError,
    detect_format,
    parquet_row_count,
)
from aiplatform.domain import datasets as domain
from aiplatform.domain.datasets import Dataset, DatasetVersion, NewVersion
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.projectors.datasets import dataset_info_key
from aiplatform.queries.datasets import DatasetView
from aiplatform.storage import BlobTooLargeError
from aiplatform.workers.datasets import quality_request

_NAME = msgspec.json.Decoder(
    Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"\S")]
)
_MESSAGE_MAX = 2_000


class VersionView(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    parent: str | None
    message: str
    sha256: str
    size: int
    rows: int | None
    format: str
    content_type: str
    filename: str
    uploaded_by: str
    created_at: datetime
    quality: dict[str, Any] | None


class DatasetOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    description: str
    latest_version: str | None
    versions: list[VersionView]
    created_by: str
    version: int
    created_at: datetime
    updated_at: datetime


def _version_view(version: DatasetVersion, created_at: datetime) -> VersionView:
    return VersionView(
        version=version.version,
        parent=version.parent,
        message=version.message,
        sha256=version.sha256,
        size=version.size,
        rows=version.rows,
        format=version.format,
        content_type=CONTENT_TYPES.get(version.format, "application/octet-stream"),  # type: ignore[call-overload]
        filename=version.filename,
        uploaded_by=version.uploaded_by,
        created_at=created_at,
        quality=version.report,
    )


def _out(dataset: Dataset, events: list[RecordedEvent]) -> DatasetOut:
    committed_at = {
        e.event.version: e.recorded_at
        for e in events
        if isinstance(e.event, domain.DatasetVersionCommitted)
    }
    return DatasetOut(
        id=uuid.UUID(dataset.dataset_id),
        project_id=uuid.UUID(dataset.project_id),
        name=dataset.name,
        description=dataset.description,
        latest_version=dataset.latest.version if dataset.latest else None,
        versions=[_version_view(v, committed_at[v.version]) for v in dataset.versions.values()],
        created_by=events[0].metadata.actor,
        version=dataset.version,
        created_at=events[0].recorded_at,
        updated_at=events[-1].recorded_at,
    )


_out_decoder = msgspec.json.Decoder(DatasetOut)


async def _load(services: Services, dataset_id: uuid.UUID, *, cached: bool = False) -> DatasetOut:
    """The dataset folded from its stream; with `cached`, through Redis (1 h, DESIGN.md), kept
    fresh by the projector's tombstones (see `Cache.set_versioned`)."""
    key = dataset_info_key(services.cache, str(dataset_id))
    if cached and (hit := await services.cache.get_versioned(key)) is not None:
        return _out_decoder.decode(hit)
    events = await services.store.read_stream(domain.stream_id(str(dataset_id)))
    dataset = DATASETS.fold(events)
    if dataset is None or dataset.deleted:
        raise domain.DatasetNotFoundError(str(dataset_id))
    out = _out(dataset, events)
    entry = VersionedEntry(key, dataset.version, msgspec.json.encode(out))
    await services.cache.set_versioned([entry], TTL_ASSET_INFO)
    return out


async def _receive(
    request: Request[Any, Any, State], services: Services, key: str
) -> tuple[Upload, Format, int | None]:
    """The upload, its format (from its content) and its row count (counted on the way)."""
    counter = RowCounter()
    try:
        upload = await receive_upload(
            request, services.blobs, key, services.settings.max_upload_bytes, observe=counter.feed
        )
    except BlobTooLargeError as error:
        raise HTTPException(status_code=413, detail=str(error)) from None
    try:
        if upload.blob.size == 0:
            raise UnsupportedFormatError("the file is empty")
        fmt = detect_format(upload.head)
        rows = counter.rows(fmt)
        if fmt == "parquet":
            async with services.blobs.local_copy(key) as path:
                rows = await asyncio.to_thread(parquet_row_count, path)
    except UnsupportedFormatError as error:
        await services.blobs.delete(key)
        raise RequestError(str(error), field="file", status_code=422) from None
    except BaseException:
        await services.blobs.delete(key)
        raise
    return upload, fmt, rows


def _message(fields: dict[str, str]) -> str:
    message = fields.get("message", "")
    if len(message) > _MESSAGE_MAX:
        raise RequestError(
            f"message must have at most {_MESSAGE_MAX} characters", field="message", status_code=422
        )
    return message


def _new_version(upload: Upload, fmt: Format, rows: int | None, principal: Principal) -> NewVersion:
    return NewVersion(
        message=_message(upload.fields),
        sha256=upload.blob.sha256,
        size=upload.blob.size,
        rows=rows,
        format=fmt,
        blob_key=upload.blob.key,
        filename=upload.filename,
        uploaded_by=principal.user_id,
    )


async def _request_quality(services: Services, dataset_id: str, version: str) -> None:
    await asyncio.to_thread(services.broker.enqueue, quality_request(dataset_id, version))


@get(
    "/",
    operation_id="ListDatasets",
    summary="List a project's datasets",
    opt={"permission": PROJECT_READ},
)
async def list_datasets(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: Annotated[uuid.UUID, QueryParameter(description="the project")],
    page: Page = 1,
    limit: Limit = 20,
    after: After = None,
) -> Envelope[list[DatasetView]]:
    await services.read_after(request, services.datasets.read_model, after)
    items, total = await services.datasets.list(project_id, page=page, limit=limit)
    return paginated(items, total=total, page=page, limit=limit)


@post(
    "/",
    operation_id="CreateDataset",
    summary="Create a dataset from an uploaded file (its v1)",
    description="multipart/form-data: `file` (CSV, JSON Lines, Parquet or plain text, detected "
    "from the content), `project_id`, `name`, and optionally `message` and `description`. Pass "
    "`project_id` in the query string too, to be refused before the upload rather than after.",
    status_code=201,
    opt={"permission": DATASET_WRITE, "project_in": FORM},
    request_max_body_size=None,
)
async def create_dataset(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
) -> Response[Any]:
    query_project = request.query_params.get("project_id")  # checked by the guard already
    dataset_id = str(uuid.uuid4())
    key = f"datasets/{dataset_id}/{uuid.uuid4().hex}"
    upload, fmt, rows = await _receive(request, services, key)
    try:
        project_id = upload.fields.get("project_id", query_project or "")
        await require_active_project(services, principal, project_id, DATASET_WRITE)
        try:
            name = _NAME.decode(msgspec.json.encode(upload.fields.get("name", "")))
        except msgspec.ValidationError:
            raise RequestError(
                "name must have 1 to 255 characters", field="name", status_code=422
            ) from None
        command = domain.CreateDataset(
            dataset_id=dataset_id,
            project_id=project_id,
            name=name,
            description=upload.fields.get("description", "")[:10_000],
            first=_new_version(upload, fmt, rows, principal),
        )
        result = await services.commands.handle(
            DATASETS, dataset_id, command, await command_context(request), new_stream=True
        )
    except BaseException:
        await services.blobs.delete(key)
        raise
    await _request_quality(services, dataset_id, "v1")
    return write_response(result, await _load(services, uuid.UUID(dataset_id)), status_code=201)


@get(
    "/{dataset_id:uuid}",
    operation_id="GetDataset",
    summary="Get a dataset with its versions",
    opt={"permission": PROJECT_READ},
)
async def get_dataset(
    services: NamedDependency[Services],
    dataset_id: FromPath[uuid.UUID],
    as_of: AsOfParameter = None,
) -> Envelope[DatasetOut]:
    past = parse_as_of(as_of)
    if past is None:
        return ok(await _load(services, dataset_id, cached=True))
    events = await past_events(
        services.store, domain.stream_id(str(dataset_id)), past, f"dataset {dataset_id}"
    )
    dataset = DATASETS.fold(events)
    if dataset is None or dataset.deleted:
        raise domain.DatasetNotFoundError(str(dataset_id))
    return ok(_out(dataset, events), as_of_meta(past, events))


@get(
    "/{dataset_id:uuid}/versions",
    operation_id="ListDatasetVersions",
    summary="A dataset's versions, oldest first",
    opt={"permission": PROJECT_READ},
)
async def list_versions(
    services: NamedDependency[Services], dataset_id: FromPath[uuid.UUID]
) -> Envelope[list[VersionView]]:
    dataset = await _load(services, dataset_id, cached=True)
    return paginated(
        dataset.versions, total=len(dataset.versions), page=1, limit=max(1, len(dataset.versions))
    )


@post(
    "/{dataset_id:uuid}/versions",
    operation_id="CommitDatasetVersion",
    summary="Upload a new version of a dataset",
    description="multipart/form-data: `file`, and optionally `message` and `parent_version` "
    "(default: the latest version). A file identical to its parent is refused.",
    status_code=201,
    opt={"permission": DATASET_WRITE},
    request_max_body_size=None,
)
async def commit_version(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    dataset_id: FromPath[uuid.UUID],
) -> Response[Any]:
    ensure_active(request.state.project_state)
    key = f"datasets/{dataset_id}/{uuid.uuid4().hex}"
    upload, fmt, rows = await _receive(request, services, key)
    try:
        command = domain.CommitVersion(
            dataset_id=str(dataset_id),
            parent_version=upload.fields.get("parent_version") or None,
            new=_new_version(upload, fmt, rows, principal),
        )
        result = await services.commands.handle(
            DATASETS, str(dataset_id), command, await command_context(request)
        )
    except domain.DatasetVersionNotFoundError as error:
        await services.blobs.delete(key)
        raise RequestError(str(error), field="parent_version", status_code=422) from None
    except BaseException:
        await services.blobs.delete(key)
        raise
    dataset = await _load(services, dataset_id)
    latest = dataset.versions[-1]
    await _request_quality(services, str(dataset_id), latest.version)
    return write_response(result, latest, status_code=201)


async def _version(services: Services, dataset_id: uuid.UUID, version: str) -> VersionView:
    dataset = await _load(services, dataset_id, cached=True)
    for candidate in dataset.versions:
        if candidate.version == version:
            return candidate
    raise domain.DatasetVersionNotFoundError(str(dataset_id), version)


@get(
    "/{dataset_id:uuid}/versions/{version:str}",
    operation_id="GetDatasetVersion",
    summary="A dataset version with its quality report",
    opt={"permission": PROJECT_READ},
)
async def get_version(
    services: NamedDependency[Services], dataset_id: FromPath[uuid.UUID], version: FromPath[str]
) -> Envelope[VersionView]:
    return ok(await _version(services, dataset_id, version))


@get(
    "/{dataset_id:uuid}/versions/{version:str}/download",
    operation_id="DownloadDatasetVersion",
    summary="Download a dataset version's file",
    opt={"permission": PROJECT_READ},
)
async def download_version(
    services: NamedDependency[Services], dataset_id: FromPath[uuid.UUID], version: FromPath[str]
) -> Stream:
    events = await services.store.read_stream(domain.stream_id(str(dataset_id)))
    dataset = DATASETS.fold(events)
    if dataset is None or dataset.deleted:
        raise domain.DatasetNotFoundError(str(dataset_id))
    committed = dataset.versions.get(version)
    if committed is None:
        raise domain.DatasetVersionNotFoundError(str(dataset_id), version)
    extension = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet", "text": ".txt"}[
        committed.format
    ]
    # An ASCII-only, quote-free name: it goes into a header.
    filename = f"{dataset.name[:100]}-{version}{extension}".replace('"', "")
    filename = filename.encode("ascii", "replace").decode()

    async def body() -> AsyncIterator[bytes]:
        async for chunk in services.blobs.open_stream(committed.blob_key):
            yield chunk

    return Stream(
        body(),
        media_type=CONTENT_TYPES.get(committed.format, "application/octet-stream"),  # type: ignore[call-overload]
        headers={
            "Content-Length": str(committed.size),
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


class DatasetDeletion(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    deleted: bool = True


@delete(
    "/{dataset_id:uuid}",
    operation_id="DeleteDataset",
    summary="Delete a dataset (its history stays in the audit log)",
    status_code=200,
    opt={"permission": DATASET_WRITE},
)
async def delete_dataset(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    dataset_id: FromPath[uuid.UUID],
) -> Response[Any]:
    command = domain.DeleteDataset(dataset_id=str(dataset_id))
    result = await services.commands.handle(
        DATASETS, str(dataset_id), command, await command_context(request)
    )
    # The cached info goes now, not when the projector gets there: a deleted dataset must not
    # be served from the cache to the client that deleted it.
    await services.cache.mark_stale(
        {dataset_info_key(services.cache, str(dataset_id)): result.stream_version}, TTL_ASSET_INFO
    )
    return write_response(result, DatasetDeletion(id=dataset_id))


@get(
    "/{dataset_id:uuid}/history",
    operation_id="GetDatasetHistory",
    summary="A dataset's events, oldest first",
    opt={"permission": PROJECT_READ},
)
async def dataset_history(
    services: NamedDependency[Services],
    dataset_id: FromPath[uuid.UUID],
    page: Page = 1,
    limit: Limit = 50,
) -> Envelope[list[HistoryEvent]]:
    return await history_page(services.store, domain.stream_id(str(dataset_id)), page, limit)


def datasets_router() -> Router:
    return Router(
        path="/datasets",
        route_handlers=[
            list_datasets,
            create_dataset,
            get_dataset,
            list_versions,
            commit_version,
            get_version,
            download_version,
            delete_dataset,
            dataset_history,
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["datasets"],
    )
