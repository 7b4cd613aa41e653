"""Which project a resource belongs to, for the guard of routes like `/datasets/{dataset_id}`.

A resource never moves to another project, so the answer is kept in a bounded in-process map:
after the first request, authorising a resource's route costs no database round trip for it.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiplatform.aggregates import DATASETS, EXPERIMENTS
from aiplatform.api.services import Services
from aiplatform.domain import jobs
from aiplatform.domain.datasets import DatasetNotFoundError
from aiplatform.domain.experiments import ExperimentNotFoundError
from aiplatform.domain.models import ModelNotFoundError

MAX_ENTRIES = 10_000


async def _experiment(services: Services, experiment_id: uuid.UUID) -> str:
    experiment = await services.commands.current_state(EXPERIMENTS, str(experiment_id))
    if experiment is None:
        raise ExperimentNotFoundError(str(experiment_id))
    return experiment.project_id


async def _dataset(services: Services, dataset_id: uuid.UUID) -> str:
    dataset = await services.commands.current_state(DATASETS, str(dataset_id))
    if dataset is None or dataset.deleted:
        raise DatasetNotFoundError(str(dataset_id))
    return dataset.project_id


async def _model(services: Services, model_id: uuid.UUID) -> str:
    found = await services.models.line(model_id)
    if found is None:
        raise ModelNotFoundError(str(model_id))
    return found[0]


async def _job(services: Services, job_id: uuid.UUID) -> str:
    # The submission alone names the project: a long job's stream is not read to find it.
    submitted = await services.store.read_stream(jobs.stream_id(str(job_id)), up_to_version=1)
    if not submitted or not isinstance(submitted[0].event, jobs.JobSubmitted):
        raise jobs.JobNotFoundError(str(job_id))
    return submitted[0].event.project_id


# Path parameter -> how to find the project of the resource it names.
RESOLVERS: dict[str, Callable[[Services, uuid.UUID], Awaitable[str]]] = {
    "experiment_id": _experiment,
    "dataset_id": _dataset,
    "model_id": _model,
    "job_id": _job,
}

_owners: OrderedDict[uuid.UUID, uuid.UUID] = OrderedDict()


async def owning_project(services: Services, parameter: str, resource_id: uuid.UUID) -> uuid.UUID:
    project_id = _owners.get(resource_id)
    if project_id is not None:
        _owners.move_to_end(resource_id)
        return project_id
    project_id = uuid.UUID(await RESOLVERS[parameter](services, resource_id))
    _owners[resource_id] = project_id
    if len(_owners) > MAX_ENTRIES:
        _owners.popitem(last=False)
    return project_id
