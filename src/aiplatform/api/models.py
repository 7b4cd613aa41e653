"""/api/v2/models: the model registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream

from aiplatform.aggregates import MODELS
from aiplatform.api.as_of import AsOf, AsOfParameter, NotYetError, parse_as_of, past_events
from aiplatform.api.context import command_context, if_match_version
from aiplatform.api.envelope import After, Envelope, Limit, Page, ok, paginated
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import FORM, Principal, provide_principal, require_active_project
from aiplatform.api.history import HistoryEvent, history_page
from aiplatform.api.responses import write_response
from aiplatform.api.services import Services, provide_services
from aiplatform.api.uploads import receive_upload
from aiplatform.auth.permissions import MODEL_WRITE, PROJECT_READ
from aiplatform.cache import TTL_ASSET_INFO, VersionedEntry
from aiplatform.domain import models as domain
from aiplatform.domain.models import ModelCard, ModelLine, Stage
from aiplatform.ml.artifacts import UnsupportedArtifactError, artifact_framework
from aiplatform.model_registration import register_model as register
from aiplatform.projectors.models import model_info_key
from aiplatform.queries.models import ModelView
from aiplatform.storage import BlobTooLargeError

ModelName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
_NAME_RULE = msgspec.json.Decoder(ModelName)
_EXTENSIONS = {"safetensors": ".safetensors", "pytorch": ".pt"}


class ModelUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    card: ModelCard | msgspec.UnsetType = msgspec.UNSET
    stage: Stage | msgspec.UnsetType = msgspec.UNSET


def _out(
    line: ModelLine, model_id: str, created_by: str, created_at: datetime, updated_at: datetime
) -> ModelView:
    model = line.versions[model_id]
    return ModelView(
        id=uuid.UUID(model_id),
        project_id=uuid.UUID(line.project_id),
        name=line.name,
        version=model.version,
        framework=model.framework,
        size=model.size,
        sha256=model.sha256,
        metrics=model.metrics,
        source_job_id=model.source_job_id,
        card=msgspec.to_builtins(model.card),
        stage=model.stage,
        created_by=created_by,
        created_at=created_at,
        updated_at=updated_at,
    )


async def _load(
    services: Services, model_id: uuid.UUID, as_of: AsOf | None = None
) -> tuple[ModelView, ModelLine]:
    """A model from its line's stream: always current, or as it was at `as_of`."""
    found = await services.models.line(model_id)
    if found is None:
        raise domain.ModelNotFoundError(str(model_id))
    resource = f"model {model_id}"
    events = await past_events(services.store, domain.stream_id(found[1]), as_of, resource)
    line = MODELS.fold(events)
    if as_of is not None and line is not None and str(model_id) not in line.versions:
        raise NotYetError(resource, as_of)
    if line is None or str(model_id) not in line.versions:
        raise domain.ModelNotFoundError(str(model_id))
    registration = next(
        e
        for e in events
        if isinstance(e.event, domain.ModelRegistered) and e.event.model_id == str(model_id)
    )
    touched = [e for e in events if getattr(e.event, "model_id", None) == str(model_id)]
    view = _out(
        line,
        str(model_id),
        registration.metadata.actor,
        registration.recorded_at,
        touched[-1].recorded_at,
    )
    return view, line


_view_decoder = msgspec.json.Decoder(ModelView)


async def _cached_view(services: Services, model_id: uuid.UUID) -> ModelView:
    """The model's info through Redis (1 h, DESIGN.md), kept fresh by the projector's
    tombstones (see `Cache.set_versioned`)."""
    key = model_info_key(services.cache, str(model_id))
    if (hit := await services.cache.get_versioned(key)) is not None:
        return _view_decoder.decode(hit)
    view, line = await _load(services, model_id)
    entry = VersionedEntry(key, line.version, msgspec.json.encode(view))
    await services.cache.set_versioned([entry], TTL_ASSET_INFO)
    return view


def _form_metrics(raw: str | None) -> dict[str, float]:
    if not raw:
        return {}
    try:
        metrics = json.loads(raw)
        if isinstance(metrics, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
        ):
            return {str(k): float(v) for k, v in metrics.items()}
    except ValueError:
        pass
    raise RequestError(
        'metrics must be a JSON object of numbers, e.g. {"accuracy": 0.93}',
        field="metrics",
        status_code=422,
    )


@get(
    "/",
    operation_id="ListModels",
    summary="List a project's registered models",
    opt={"permission": PROJECT_READ},
)
async def list_models(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: Annotated[uuid.UUID, QueryParameter(description="the project")],
    name: Annotated[str | None, QueryParameter(max_length=100)] = None,
    stage: Annotated[str | None, QueryParameter(max_length=20)] = None,
    page: Page = 1,
    limit: Limit = 20,
    after: After = None,
) -> Envelope[list[ModelView]]:
    await services.read_after(request, services.models.read_model, after)
    items, total = await services.models.list(
        project_id, name=name, stage=stage, page=page, limit=limit
    )
    return paginated(items, total=total, page=page, limit=limit)


@post(
    "/",
    operation_id="RegisterModel",
    summary="Register a model from an uploaded artifact (safetensors or a PyTorch state dict)",
    description="multipart/form-data: `file`, `project_id`, `name`, and optionally `metrics` "
    "(a JSON object of numbers), `description`, `intended_use`, `limitations`, "
    "`training_dataset_id`, `training_dataset_version`. Pass `project_id` in the query string "
    "too, to be refused before the upload rather than after it.",
    status_code=201,
    opt={"permission": MODEL_WRITE, "project_in": FORM},
    request_max_body_size=None,
)
async def register_model(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
) -> Response[Any]:
    query_project = request.query_params.get("project_id")  # checked by the guard already
    model_id = str(uuid.uuid4())
    key = f"models/{model_id}/artifact"
    try:
        upload = await receive_upload(
            request, services.blobs, key, services.settings.max_upload_bytes
        )
    except BlobTooLargeError as error:
        raise HTTPException(status_code=413, detail=str(error)) from None
    try:
        fields = upload.fields
        project_id = fields.get("project_id", query_project or "")
        await require_active_project(services, principal, project_id, MODEL_WRITE)
        name = fields.get("name", "")
        try:
            _NAME_RULE.decode(json.dumps(name))
        except msgspec.ValidationError:
            raise RequestError(
                "name must be 1-100 letters, digits, `_`, `.` or `-`, "
                "starting with a letter or digit",
                field="name",
                status_code=422,
            ) from None
        framework = artifact_framework(upload.head)
        card = ModelCard(
            description=fields.get("description", ""),
            intended_use=fields.get("intended_use", ""),
            limitations=fields.get("limitations", ""),
            training_dataset_id=fields.get("training_dataset_id") or None,
            training_dataset_version=fields.get("training_dataset_version") or None,
            metrics=_form_metrics(fields.get("metrics")),
        )

        command = domain.RegisterModel(
            model_id=model_id,
            project_id=project_id,
            name=name,
            framework=framework,
            artifact_key=upload.blob.key,
            size=upload.blob.size,
            sha256=upload.blob.sha256,
            metrics=card.metrics,
            card=card,
        )
        result = await register(services.commands, command, await command_context(request))
    except UnsupportedArtifactError as error:
        await services.blobs.delete(key)
        raise RequestError(str(error), field="file", status_code=422) from None
    except BaseException:
        await services.blobs.delete(key)
        raise
    view, _ = await _load(services, uuid.UUID(model_id))
    return write_response(result, view, status_code=201)


@get(
    "/{model_id:uuid}",
    operation_id="GetModel",
    summary="Get a registered model",
    opt={"permission": PROJECT_READ},
)
async def get_model(
    services: NamedDependency[Services],
    model_id: FromPath[uuid.UUID],
    as_of: AsOfParameter = None,
) -> Envelope[ModelView]:
    past = parse_as_of(as_of)
    if past is None:
        return ok(await _cached_view(services, model_id))
    view, line = await _load(services, model_id, past)
    # The model line's last event by then, as other resources' `as_of` answers say.
    position = await services.pool.fetchval(
        "SELECT global_position FROM events WHERE stream_id = $1 AND stream_version = $2",
        domain.stream_id(domain.line_of(str(view.project_id), view.name)),
        line.version,
    )
    return ok(view, {"as_of": str(past), "position": position})


@put(
    "/{model_id:uuid}",
    operation_id="UpdateModel",
    summary="Update a model's card or stage (one production version per name)",
    opt={"permission": MODEL_WRITE},
)
async def update_model(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    model_id: FromPath[uuid.UUID],
    data: JSONBody[ModelUpdate],
) -> Response[Any]:
    found = await services.models.line(model_id)
    if found is None:
        raise domain.ModelNotFoundError(str(model_id))
    expected = if_match_version(request)
    command = domain.UpdateModel(
        model_id=str(model_id), expected_version=expected, card=data.card, stage=data.stage
    )
    result = await services.commands.handle(
        MODELS,
        found[1],
        command,
        await command_context(request),
        retry_on_conflict=expected is None,
    )
    view, line = await _load(services, model_id)
    # Now rather than when the projector gets there, for the client that made the change: a
    # promotion also demotes another version, so every version of the name is marked stale.
    await services.cache.mark_stale(
        {model_info_key(services.cache, other): line.version for other in line.versions},
        TTL_ASSET_INFO,
    )
    return write_response(result, view)


@get(
    "/{model_id:uuid}/download",
    operation_id="DownloadModel",
    summary="Download a model's artifact",
    opt={"permission": PROJECT_READ},
)
async def download_model(
    services: NamedDependency[Services], model_id: FromPath[uuid.UUID]
) -> Stream:
    view, line = await _load(services, model_id)
    key = line.versions[str(model_id)].artifact_key
    size = await services.blobs.size(key)
    filename = f"{view.name}-v{view.version}{_EXTENSIONS.get(view.framework, '')}"

    async def body() -> AsyncIterator[bytes]:
        async for chunk in services.blobs.open_stream(key):
            yield chunk

    return Stream(
        body(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


@get(
    "/{model_id:uuid}/history",
    operation_id="GetModelHistory",
    summary="The events of a model's name (all its versions), oldest first",
    opt={"permission": PROJECT_READ},
)
async def model_history(
    services: NamedDependency[Services],
    model_id: FromPath[uuid.UUID],
    page: Page = 1,
    limit: Limit = 50,
) -> Envelope[list[HistoryEvent]]:
    found = await services.models.line(model_id)
    if found is None:
        raise domain.ModelNotFoundError(str(model_id))
    return await history_page(services.store, domain.stream_id(found[1]), page, limit)


def models_router() -> Router:
    return Router(
        path="/models",
        route_handlers=[
            list_models,
            register_model,
            get_model,
            update_model,
            download_model,
            model_history,
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["models"],
    )
