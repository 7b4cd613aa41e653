"""Every read model's projector."""

from aiplatform.projectors.datasets import DatasetsProjector
from aiplatform.projectors.experiments import ExperimentsProjector
from aiplatform.projectors.jobs import JobsProjector
from aiplatform.projectors.models import ModelsProjector
from aiplatform.projectors.notifications import NotificationsProjector
from aiplatform.projectors.projects import ProjectsProjector
from aiplatform.projectors.roles import RolesProjector
from aiplatform.projectors.runner import Projector
from aiplatform.projectors.users import UsersProjector


def all_projectors() -> list[Projector]:
    return [
        ProjectsProjector(),
        UsersProjector(),
        RolesProjector(),
        ExperimentsProjector(),
        ModelsProjector(),
        DatasetsProjector(),
        JobsProjector(),
        NotificationsProjector(),
    ]
