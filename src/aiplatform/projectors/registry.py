"""Every read model's projector."""

from aiplatform.projectors.datasets import DatasetsProjector
from aiplatform.projectors.experiments import ExperimentsProjector
from aiplatform.projectors.jobs import JobsProjector
from aiplatform.projectors.models import ModelsProjector
from aiplatform.projectors.notifications import NotificationsProjector
from aiplatform.projectors.projects import ProjectsProjector
from aiplatform.projectors.read_models import ReadModel
from aiplatform.projectors.roles import RolesProjector
from aiplatform.projectors.runner import Projector
from aiplatform.projectors.users import UsersProjector

# By read model name, in the order a catch-up pass runs them.
PROJECTOR_CLASSES: dict[str, type[Projector]] = {
    "projects": ProjectsProjector,
    "users": UsersProjector,
    "roles": RolesProjector,
    "experiments": ExperimentsProjector,
    "models": ModelsProjector,
    "datasets": DatasetsProjector,
    "jobs": JobsProjector,
    "notifications": NotificationsProjector,
}


def all_projectors() -> list[Projector]:
    """The projectors of the versions this code ships."""
    return [projector_class() for projector_class in PROJECTOR_CLASSES.values()]


def projector_for(read_model: ReadModel) -> Projector:
    """This code's projector writing to the tables of `read_model`, whichever version of its
    SQL file installed them: the projector's statements must suit both the version this code
    ships and the one it replaces (docs/event-store.md, rebuilds)."""
    return PROJECTOR_CLASSES[read_model.name](read_model)  # type: ignore[call-arg]
