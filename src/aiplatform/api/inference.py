"""/api/v2/inference: the models that can serve, and generating / predicting with one.

The request runs on an inference worker (the `inference` queue), which keeps recently used
models loaded; this process waits for the replies on Redis. With `stream: true` the generated
text arrives as server-sent events, piece by piece, as the worker samples it.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.params import JSONBody, QueryParameter
from litestar.response import Stream

from aiplatform.aggregates import JOBS, MODELS
from aiplatform.api.envelope import Envelope, Limit, Page, ok, paginated
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import Principal, check_project_permission, provide_principal
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import AUTHENTICATED, INFERENCE_RUN, PROJECT_READ
from aiplatform.domain.errors import InvalidStateError, NotFoundError
from aiplatform.domain.models import ModelNotFoundError, ModelVersion
from aiplatform.inference.client import InferenceUnavailableError, new_request_id, replies
from aiplatform.inference.replies import Done, Failed, InferenceRequest, Piece, Reply
from aiplatform.queries.models import ModelView

MAX_PROMPT_CHARACTERS = 4_096
MAX_NEW_TOKENS = 2_048
MAX_BATCH = 256


class GenerateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model_id: uuid.UUID
    prompt: Annotated[str, msgspec.Meta(max_length=MAX_PROMPT_CHARACTERS)] | None = None
    inputs: Annotated[list[Any], msgspec.Meta(min_length=1, max_length=MAX_BATCH)] | None = None
    max_new_tokens: Annotated[int, msgspec.Meta(ge=0, le=MAX_NEW_TOKENS)] = 128
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 1.0
    top_k: Annotated[int, msgspec.Meta(ge=1, le=256)] | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    stream: bool = False


class ServableModel(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    version: int
    stage: str
    template: str
    task: str
    metrics: dict[str, float]


_TASKS = {"char-lm": "text-generation"}


@get(
    "/models",
    operation_id="ListInferenceModels",
    summary="The registered models of a project that can serve (trained here, not archived)",
    opt={"permission": PROJECT_READ},
)
async def list_servable(
    services: NamedDependency[Services],
    project_id: Annotated[uuid.UUID, QueryParameter(description="the project")],
    page: Page = 1,
    limit: Limit = 20,
) -> Envelope[list[ServableModel]]:
    items, total = await services.models.list(
        project_id, name=None, stage=None, page=page, limit=limit, servable=True
    )
    return paginated([_servable(view) for view in items], total=total, page=page, limit=limit)


def _servable(view: ModelView) -> ServableModel:
    template = str(view.card.get("template"))
    return ServableModel(
        id=view.id,
        project_id=view.project_id,
        name=view.name,
        version=view.version,
        stage=view.stage,
        template=template,
        task=_TASKS.get(template, "classification"),
        metrics=view.metrics,
    )


@post(
    "/generate",
    operation_id="Generate",
    summary="Generate text with a char-lm model, or classify inputs with a classifier",
    description="`prompt` for language models (and single texts for text classifiers), "
    "`inputs` for a batch: objects of feature values for tabular classifiers, strings for text "
    "classifiers. `seed` makes sampling reproducible; `stream: true` answers with server-sent "
    "events (`piece` events with the text as it is generated, then `done` with the whole).",
    status_code=200,
    opt={"permission": AUTHENTICATED},  # and INFERENCE_RUN in the model's project, checked below
)
async def generate(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    data: JSONBody[GenerateRequest],
) -> Response[Any]:
    model = await _model(services, principal, str(data.model_id))
    template = model.card.template
    assert template is not None
    language_model = template == "char-lm"
    if language_model and data.prompt is None:
        raise RequestError("a char-lm model generates from a `prompt`", field="prompt")
    if not language_model and data.prompt is None and data.inputs is None:
        raise RequestError(
            f"a {template} model classifies `inputs` (or one `prompt`)", field="inputs"
        )
    if not language_model and data.stream:
        raise RequestError("only text generation streams", field="stream")
    inference = InferenceRequest(
        request_id=new_request_id(),
        model_id=model.model_id,
        artifact_key=model.artifact_key,
        sha256=model.sha256,
        kind="generate" if language_model else "predict",
        prompt=data.prompt,
        inputs=data.inputs,
        max_new_tokens=data.max_new_tokens,
        temperature=data.temperature,
        top_k=data.top_k,
        seed=data.seed,
        stream=data.stream,
    )
    answers = replies(
        services.broker,
        services.waiting_redis,
        services.cache.key("inference", "reply", inference.request_id),
        inference,
        services.settings.inference_timeout_s,
    )
    first = await _first(answers)
    if isinstance(first, Done):
        return Response(ok({"model_id": model.model_id, **first.result}))
    return Stream(
        _events(first, answers),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _first(answers: AsyncIterator[Reply]) -> Piece | Done:
    """The first reply; failures become HTTP errors before any byte of a stream is sent."""
    try:
        reply = await anext(answers)
    except InferenceUnavailableError as error:
        raise HTTPException(status_code=503, detail=str(error)) from None
    if isinstance(reply, Failed):
        if reply.status == 422:
            raise RequestError(reply.message, field="inputs", status_code=422)
        raise HTTPException(status_code=reply.status, detail=reply.message)
    return reply


async def _events(first: Piece, answers: AsyncIterator[Reply]) -> AsyncIterator[bytes]:
    yield _event("piece", {"text": first.text})
    try:
        async for reply in answers:
            match reply:
                case Piece():
                    yield _event("piece", {"text": reply.text})
                case Done():
                    yield _event("done", reply.result)
                case Failed():
                    yield _event("error", {"status": reply.status, "message": reply.message})
    except InferenceUnavailableError as error:
        yield _event("error", {"status": 503, "message": str(error)})


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


# A model version's project, artifact and card never change: after its first request, a
# model is found without a database read (bounded, least recently used out).
_MODELS_SEEN: OrderedDict[str, tuple[str, ModelVersion]] = OrderedDict()
_MODELS_SEEN_MAX = 10_000


async def _model(services: Services, principal: Principal, model_id: str) -> ModelVersion:
    """The model, if the caller may run it; clear errors for what cannot serve."""
    seen = _MODELS_SEEN.get(model_id)
    if seen is not None:
        _MODELS_SEEN.move_to_end(model_id)
        await _check(services, principal, seen[0])
        return _servable_version(seen[1])
    found = await services.models.line(uuid.UUID(model_id))
    if found is None:
        job = await services.commands.current_state(JOBS, model_id)
        if job is not None and not job.finished:
            await _check(services, principal, job.project_id)
            raise InvalidStateError(
                f"{model_id} is a training job that is still {job.status}; its model can "
                "serve once the job has succeeded"
            )
        if job is not None and job.model_id is not None:
            await _check(services, principal, job.project_id)
            raise NotFoundError(
                f"{model_id} is a training job, not a model; the model it trained is {job.model_id}"
            )
        raise ModelNotFoundError(model_id)
    project_id, line = found
    await _check(services, principal, project_id)
    model_line = await services.commands.current_state(MODELS, line)
    if model_line is None or model_id not in model_line.versions:
        raise ModelNotFoundError(model_id)
    model = model_line.versions[model_id]
    _MODELS_SEEN[model_id] = (project_id, model)
    if len(_MODELS_SEEN) > _MODELS_SEEN_MAX:
        _MODELS_SEEN.popitem(last=False)
    return _servable_version(model)


def _servable_version(model: ModelVersion) -> ModelVersion:
    if model.card.template is None:
        raise RequestError(
            f"model {model.model_id} was uploaded, not trained here: only models trained by "
            "this platform's templates can serve",
            field="model_id",
            status_code=422,
        )
    return model


async def _check(services: Services, principal: Principal, project_id: str) -> None:
    """Against the project's cached view, as reads of a project are (an inference changes
    nothing): a membership change applies once the projector has it, within moments."""
    project = await services.projects.get(uuid.UUID(project_id))
    members = project.members if project is not None else None
    await check_project_permission(services, principal, members, project_id, INFERENCE_RUN)


def inference_router() -> Router:
    return Router(
        path="/inference",
        route_handlers=[list_servable, generate],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["inference"],
    )
