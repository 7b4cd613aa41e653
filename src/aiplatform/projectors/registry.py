"""Every read model's projector."""

from aiplatform.projectors.projects import ProjectsProjector
from aiplatform.projectors.runner import Projector


def all_projectors() -> list[Projector]:
    return [ProjectsProjector()]
