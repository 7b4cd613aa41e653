"""Each aggregate's stream naming, `evolve` and `decide`, bundled for the command handler."""

from aiplatform.commands import Aggregate
from aiplatform.domain import datasets, experiments, inbox, jobs, models, projects, roles, users

PROJECTS = Aggregate(stream_id=projects.stream_id, evolve=projects.evolve, decide=projects.decide)
USERS = Aggregate(stream_id=users.stream_id, evolve=users.evolve, decide=users.decide)
ROLES = Aggregate(stream_id=roles.stream_id, evolve=roles.evolve, decide=roles.decide)
EXPERIMENTS = Aggregate(
    stream_id=experiments.stream_id, evolve=experiments.evolve, decide=experiments.decide
)
MODELS = Aggregate(stream_id=models.stream_id, evolve=models.evolve, decide=models.decide)
DATASETS = Aggregate(stream_id=datasets.stream_id, evolve=datasets.evolve, decide=datasets.decide)
JOBS = Aggregate(stream_id=jobs.stream_id, evolve=jobs.evolve, decide=jobs.decide)
INBOX = Aggregate(stream_id=inbox.stream_id, evolve=inbox.evolve, decide=inbox.decide)
