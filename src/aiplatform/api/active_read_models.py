"""Which version of each read model this API process reads: the active one, re-read from the
database every second, so a version switched in by a rebuild is used within a second, without
a restart. A request that straddles a switch may run one statement on each version; both are
consistent prefixes of the log, and the retired version stays in place (and projected) for
minutes after a switch, so no read of a process that has not moved yet fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import suppress

from aiplatform.api.services import Services
from aiplatform.projectors.read_models import ACTIVE_REFRESH_S, ReadModel, active_read_models
from aiplatform.queries.datasets import DatasetQueries
from aiplatform.queries.experiments import ExperimentQueries
from aiplatform.queries.jobs import JobQueries
from aiplatform.queries.models import ModelQueries
from aiplatform.queries.notifications import NotificationQueries
from aiplatform.queries.projects import ProjectQueries
from aiplatform.queries.roles import RoleQueries
from aiplatform.queries.users import UserQueries

log = logging.getLogger(__name__)


def use_read_models(services: Services, active: Mapping[str, ReadModel]) -> list[str]:
    """Points the services' queries at the `active` versions; returns the read models whose
    version changed. A read model missing from `active` keeps its current version."""
    pool, cache = services.pool, services.cache
    changed = []

    def moved(name: str, current: ReadModel) -> ReadModel | None:
        new = active.get(name)
        if new is None or new == current:
            return None
        changed.append(name)
        return new

    if projects := moved("projects", services.projects.read_model):
        services.projects = ProjectQueries(pool, cache, projects)
    if users := moved("users", services.users.read_model):
        services.users = UserQueries(pool, users)
    if roles := moved("roles", services.roles.read_model):
        services.roles = RoleQueries(pool, roles)
    if experiments := moved("experiments", services.experiments.read_model):
        services.experiments = ExperimentQueries(pool, experiments)
    if models := moved("models", services.models.read_model):
        services.models = ModelQueries(pool, models)
    if datasets := moved("datasets", services.datasets.read_model):
        services.datasets = DatasetQueries(pool, datasets)
    jobs = moved("jobs", services.jobs.read_model)
    if jobs is not None or projects is not None:
        # Job queries check membership in the projects read model.
        services.jobs = JobQueries(
            pool, cache, jobs or services.jobs.read_model, services.projects.read_model
        )
    if notifications := moved("notifications", services.notifications.read_model):
        services.notifications = NotificationQueries(pool, notifications)
        services.streams.follow(notifications)
    return changed


class ActiveReadModels:
    """Re-reads the active versions every `ACTIVE_REFRESH_S` and moves the services to them."""

    def __init__(self, services: Services):
        self.services = services
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> list[str]:
        changed = use_read_models(self.services, await active_read_models(self.services.pool))
        for name in changed:
            log.info("reading read model %s from its newly active version", name)
        return changed

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="active-read-models")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(ACTIVE_REFRESH_S)
            try:
                await self.refresh()
            except Exception:  # the database away for a moment: keep the versions in use
                log.exception("could not read the active read-model versions")
