"""`aiplatform import-v1 DB`: the rows of a v1 SQLite database become events (docs/import-v1.md).

Every row goes through the domain like a request would (`decide`, then an append), as its
original owner, with metadata saying it was imported from v1 and when it happened there. Ids
are derived from the v1 ids (uuid5), and every command carries an idempotency key named after
its row, so running the import again appends nothing twice: the event store answers a repeated
key with the first result. A row that does not fit, or whose parent was refused, is reported
with the reason, and the import goes on.

The files of datasets and models are copied into the blob store when they are found (at their
v1 path, or relative to the database's directory) and match their recorded size and hash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec

from aiplatform.aggregates import DATASETS, EXPERIMENTS, JOBS, MODELS, PROJECTS, USERS
from aiplatform.auth.accounts import create_account, update_account
from aiplatform.commands import Aggregate, CommandContext, CommandHandler, InTransaction
from aiplatform.config import Settings
from aiplatform.domain import datasets, experiments, jobs, models, projects, users
from aiplatform.domain.errors import DomainError
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.errors import IdempotencyKeyReusedError
from aiplatform.eventstore.store import AppendResult, EventStore
from aiplatform.importing.v1_rows import (
    RowError,
    V1Dataset,
    V1Experiment,
    V1Member,
    V1Model,
    V1Project,
    V1Task,
    V1User,
    parse_row,
)
from aiplatform.model_registration import register_model
from aiplatform.storage import BlobStore, BlobTooLargeError

SOURCE = "v1"
IMPORTER = "system:import-v1"
# Fixed forever: the ids of imported rows are derived from it.
_NAMESPACE = uuid.UUID("0b6f5c1e-1f2a-5d7c-9a0e-6c1d2e3f4a5b")
Row = TypeVar("Row", bound=msgspec.Struct)


def imported_id(table: str, v1_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{table}/{v1_id}"))


@dataclass(frozen=True)
class Refusal:
    table: str
    row: str
    reason: str


@dataclass
class ImportReport:
    imported: Counter[str] = field(default_factory=Counter)
    already_imported: Counter[str] = field(default_factory=Counter)
    refused: list[Refusal] = field(default_factory=list)
    # Rows imported without their file: (table, row, v1 path).
    missing_files: list[tuple[str, str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        tables = sorted(
            set(self.imported) | set(self.already_imported) | {r.table for r in self.refused}
        )
        summary = [
            f"{table}: {self.imported[table]} imported, {self.already_imported[table]} already "
            f"there, {sum(r.table == table for r in self.refused)} refused"
            for table in tables
        ]
        missing = [
            f"no file for {table} {row}: {path} was not found; upload it again to use it"
            for table, row, path in self.missing_files
        ]
        return summary + [f"refused {r.table} {r.row}: {r.reason}" for r in self.refused] + missing


@dataclass(frozen=True)
class Origin:
    """Where a command of the import comes from: its row's fingerprint, the row's owner (the
    actor of its events) and when the row's fact happened in v1."""

    fingerprint: str
    actor: str
    occurred_at: datetime


class Refused(Exception):
    """A row that fits its table but cannot be imported; the message says why."""


# Tables in dependency order, with how each is read and which columns name a row.
_TABLES: tuple[tuple[str, type[msgspec.Struct], str], ...] = (
    ("users", V1User, "id"),
    ("projects", V1Project, "id"),
    ("project_members", V1Member, "project_id, user_id"),
    ("experiments", V1Experiment, "id"),
    ("datasets", V1Dataset, "id"),
    ("models", V1Model, "project_id, name, version, id"),
    ("tasks", V1Task, "id"),
)


class V1Import:
    def __init__(
        self,
        pool: asyncpg.Pool,
        database: sqlite3.Connection,
        blobs: BlobStore,
        files_root: Path,
    ):
        self.handler = CommandHandler(EventStore(pool))
        self.database = database
        self.blobs = blobs
        self.files_root = files_root
        self.report = ImportReport()
        # v1 ids whose rows are in the log, now or from an earlier run: children need them.
        self.present: dict[str, set[int]] = {table: set() for table, _, _ in _TABLES}

    async def run(self) -> ImportReport:
        steps: dict[str, Callable[[Any, str], Awaitable[bool]]] = {
            "users": self._user,
            "projects": self._project,
            "project_members": self._member,
            "experiments": self._experiment,
            "datasets": self._dataset,
            "models": self._model,
            "tasks": self._task,
        }
        existing = {
            name
            for (name,) in self.database.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        for table, kind, order in _TABLES:
            if table not in existing:
                continue
            for row in self.database.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                keys = ["id"] if "id" in row.keys() else order.split(", ")  # noqa: SIM118
                name = ", ".join(f"{key}={row[key]!r}" for key in keys)
                try:
                    parsed = parse_row(row, kind)
                    fresh = await steps[table](parsed, _fingerprint(row))
                except (RowError, Refused, DomainError) as error:
                    self.report.refused.append(Refusal(table, name, str(error)))
                    continue
                except IdempotencyKeyReusedError:
                    reason = "the row changed since it was imported; v1 rows are imported once"
                    self.report.refused.append(Refusal(table, name, reason))
                    continue
                counts = self.report.imported if fresh else self.report.already_imported
                counts[table] += 1
                if isinstance(parsed, V1Member):
                    continue
                self.present[table].add(parsed.id)
        return self.report

    async def _command(
        self,
        aggregate: Aggregate[Any, Any],
        entity_id: str,
        command: Any,
        *,
        key: str,
        origin: Origin,
        in_transaction: InTransaction | None = None,
    ) -> bool:
        """Decides and appends `command` once per `key`; whether it appended now."""
        metadata = EventMetadata(
            actor=origin.actor, imported=True, imported_from=SOURCE, occurred_at=origin.occurred_at
        )
        context = CommandContext(
            metadata=metadata, idempotency_key=f"import-v1:{key}", request_hash=origin.fingerprint
        )
        if aggregate is MODELS and isinstance(command, models.RegisterModel):
            result = await register_model(self.handler, command, context)
        else:
            result = await self.handler.handle(
                aggregate, entity_id, command, context, in_transaction=in_transaction
            )
        return not result.duplicate and result.position is not None

    def _user_id(self, v1_id: int, role: str) -> str:
        if v1_id not in self.present["users"]:
            raise Refused(f"its {role} (v1 user {v1_id}) was not imported")
        return imported_id("users", v1_id)

    def _project_id(self, v1_id: int) -> str:
        if v1_id not in self.present["projects"]:
            raise Refused(f"its project (v1 project {v1_id}) was not imported")
        return imported_id("projects", v1_id)

    async def _user(self, row: V1User, fingerprint: str) -> bool:
        user_id = imported_id("users", row.id)

        async def claim(connection: asyncpg.Connection, _: AppendResult) -> None:
            # v1 hashes that are Argon2 keep working; others fail to verify until an admin
            # sets a new password.
            await create_account(
                connection,
                user_id=user_id,
                username=row.username,
                email=row.email,
                password_hash=row.hashed_password,
                system_role=row.role,
            )

        register = users.RegisterUser(
            user_id=user_id,
            username=row.username,
            email=row.email,
            full_name=row.full_name or "",
            system_role=row.role,
        )
        common = Origin(fingerprint, IMPORTER, row.created_at)
        fresh = await self._command(
            USERS, user_id, register, key=f"users/{row.id}", in_transaction=claim, origin=common
        )
        if not row.is_active:

            async def deactivate(connection: asyncpg.Connection, _: AppendResult) -> None:
                await update_account(connection, user_id, active=False)

            command = users.UpdateUser(user_id=user_id, active=False)
            key = f"users/{row.id}/deactivated"
            fresh |= await self._command(
                USERS, user_id, command, key=key, in_transaction=deactivate, origin=common
            )
        return fresh

    async def _project(self, row: V1Project, fingerprint: str) -> bool:
        project_id = imported_id("projects", row.id)
        owner = self._user_id(row.owner_id, "owner")
        common = Origin(fingerprint, owner, row.created_at)
        create = projects.CreateProject(
            project_id=project_id,
            name=row.name,
            description=row.description or "",
            config=row.config,
            tags=row.tags,
            owner_id=owner,
        )
        fresh = await self._command(
            PROJECTS, project_id, create, key=f"projects/{row.id}", origin=common
        )
        if row.status == "archived":
            archive = projects.ArchiveProject(project_id=project_id)
            key = f"projects/{row.id}/archived"
            fresh |= await self._command(PROJECTS, project_id, archive, key=key, origin=common)
        return fresh

    async def _member(self, row: V1Member, fingerprint: str) -> bool:
        project_id = self._project_id(row.project_id)
        grant = projects.GrantMember(
            project_id=project_id, user_id=self._user_id(row.user_id, "member"), role=row.role
        )
        return await self._command(
            PROJECTS,
            project_id,
            grant,
            key=f"project_members/{row.project_id}/{row.user_id}",
            origin=Origin(fingerprint, IMPORTER, row.created_at),
        )

    async def _experiment(self, row: V1Experiment, fingerprint: str) -> bool:
        experiment_id = imported_id("experiments", row.id)
        common = Origin(fingerprint, self._user_id(row.created_by, "creator"), row.created_at)
        create = experiments.CreateExperiment(
            experiment_id=experiment_id,
            project_id=self._project_id(row.project_id),
            name=row.name,
            description=row.description or "",
            base_model=row.base_model,
            task_type=row.task_type,
            config=row.config,
        )
        key = f"experiments/{row.id}"
        fresh = await self._command(EXPERIMENTS, experiment_id, create, key=key, origin=common)
        # A finished experiment ran once: started, then finished with its metrics. One that was
        # running in v1 stays a draft, since nothing runs it here.
        followers: list[tuple[str, Any]] = []
        if row.status in ("completed", "failed", "cancelled"):
            followers = [
                ("started", experiments.StartExperiment(experiment_id=experiment_id)),
                (
                    "finished",
                    experiments.FinishExperiment(
                        experiment_id=experiment_id, status=row.status, metrics=row.metrics
                    ),
                ),
            ]
        elif row.status == "archived":
            archive = experiments.UpdateExperiment(experiment_id=experiment_id, status="archived")
            followers = [("archived", archive)]
        for step, command in followers:
            fresh |= await self._command(
                EXPERIMENTS, experiment_id, command, key=f"{key}/{step}", origin=common
            )
        return fresh

    async def _dataset(self, row: V1Dataset, fingerprint: str) -> bool:
        dataset_id = imported_id("datasets", row.id)
        creator = self._user_id(row.created_by, "creator")
        project_id = self._project_id(row.project_id)
        blob_key = f"datasets/{dataset_id}/v1-import"
        await self._copy_file(
            "datasets", row.id, row.file_path, blob_key, row.file_size, row.file_hash
        )
        create = datasets.CreateDataset(
            dataset_id=dataset_id,
            project_id=project_id,
            name=row.name,
            description=row.description or "",
            first=datasets.NewVersion(
                message="imported from v1",
                sha256=row.file_hash,
                size=row.file_size,
                rows=row.row_count,
                format=row.format,
                blob_key=blob_key,
                filename=Path(row.file_path).name or "data",
                uploaded_by=creator,
            ),
        )
        return await self._command(
            DATASETS,
            dataset_id,
            create,
            key=f"datasets/{row.id}",
            origin=Origin(fingerprint, creator, row.created_at),
        )

    async def _model(self, row: V1Model, fingerprint: str) -> bool:
        model_id = imported_id("models", row.id)
        project_id = self._project_id(row.project_id)
        line = models.line_of(project_id, row.name)
        common = Origin(fingerprint, self._user_id(row.created_by, "creator"), row.created_at)
        blob_key = f"models/{model_id}/v1-import"
        await self._copy_file(
            "models", row.id, row.file_path, blob_key, row.file_size, row.file_hash
        )
        register = models.RegisterModel(
            model_id=model_id,
            project_id=project_id,
            name=row.name,
            framework=row.framework,
            artifact_key=blob_key,
            size=row.file_size,
            sha256=row.file_hash,
            metrics=row.metrics,
            card=models.ModelCard(description=f"imported from v1 (version {row.version})"),
        )
        fresh = await self._command(MODELS, line, register, key=f"models/{row.id}", origin=common)
        if row.stage != "none":
            stage = models.UpdateModel(model_id=model_id, stage=row.stage)
            key = f"models/{row.id}/stage"
            fresh |= await self._command(MODELS, line, stage, key=key, origin=common)
        return fresh

    async def _copy_file(
        self, table: str, v1_id: int, v1_path: str, key: str, size: int, sha256: str
    ) -> None:
        """Puts the row's file in the blob store under `key`, unless it is there already; a
        file that is not found is noted, one that differs from its row refuses the row."""
        if await self.blobs.exists(key):
            return
        path = Path(v1_path)
        if not path.is_absolute():
            path = self.files_root / path
        if not await asyncio.to_thread(path.is_file):
            self.report.missing_files.append((table, f"id={v1_id}", v1_path))
            return
        try:
            info = await self.blobs.put_stream(key, _read(path), max_bytes=size)
        except BlobTooLargeError:
            raise Refused(f"its file {v1_path} is larger than its file_size ({size})") from None
        if (info.size, info.sha256) != (size, sha256):
            await self.blobs.delete(key)
            raise Refused(f"its file {v1_path} does not match its file_size and file_hash")

    async def _task(self, row: V1Task, fingerprint: str) -> bool:
        if row.task_type != "training":
            raise Refused("v2 keeps no history of inference requests")
        if row.status in ("pending", "running"):
            raise Refused(f"the task was still {row.status} in v1; submit it again here")
        template = row.config.get("template")
        if not isinstance(template, str):
            raise Refused("its config names no training template (config.template)")
        if row.dataset_id is None or row.dataset_id not in self.present["datasets"]:
            raise Refused(f"its dataset (v1 dataset {row.dataset_id}) was not imported")
        job_id = imported_id("tasks", row.id)
        hyperparameters = row.config.get("hyperparameters", {})
        submit = jobs.SubmitJob(
            job_id=job_id,
            project_id=self._project_id(row.project_id),
            name=row.name,
            template=template,
            dataset_id=imported_id("datasets", row.dataset_id),
            dataset_version="v1",
            base_model_id=None,
            hyperparameters=hyperparameters if isinstance(hyperparameters, dict) else {},
            priority=row.priority,
        )
        outcome: Any
        if row.status == "completed":
            if row.model_id is None or row.model_id not in self.present["models"]:
                raise Refused(f"its model (v1 model {row.model_id}) was not imported")
            finished = row.finished_at or row.created_at
            outcome = jobs.SucceedJob(
                job_id=job_id,
                model_id=imported_id("models", row.model_id),
                metrics=_numbers(row.config.get("metrics")),
                duration_s=max(0.0, (finished - row.created_at).total_seconds()),
                resource_usage={},
            )
        elif row.status == "failed":
            outcome = jobs.FailJob(job_id=job_id, error=row.error or "failed in v1")
        else:
            outcome = jobs.CancelJob(job_id=job_id)
        common = Origin(fingerprint, self._user_id(row.created_by, "submitter"), row.created_at)
        fresh = await self._command(JOBS, job_id, submit, key=f"tasks/{row.id}", origin=common)
        ended = dataclasses.replace(common, occurred_at=row.finished_at or row.created_at)
        fresh |= await self._command(JOBS, job_id, outcome, key=f"tasks/{row.id}/end", origin=ended)
        return fresh


def _numbers(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


async def _read(path: Path) -> AsyncIterator[bytes]:
    with await asyncio.to_thread(path.open, "rb") as file:
        while chunk := await asyncio.to_thread(file.read, 1 << 20):
            yield chunk


def _fingerprint(row: sqlite3.Row) -> str:
    """What the row said when it was imported: a changed row is reported, not imported again."""
    content = json.dumps({key: row[key] for key in row.keys()}, sort_keys=True, default=str)  # noqa: SIM118
    return hashlib.sha256(content.encode()).hexdigest()


async def import_v1(pool: asyncpg.Pool, blobs: BlobStore, path: Path) -> ImportReport:
    """Imports the v1 database at `path` (an existing file: check before calling)."""
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    database.row_factory = sqlite3.Row
    try:
        return await V1Import(pool, database, blobs, path.parent).run()
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{path} is not a readable v1 database: {error}") from None
    finally:
        database.close()


def run_import_v1(settings: Settings, path: Path) -> int:
    """`aiplatform import-v1 PATH`: prints what it imported and what it refused, and why."""
    from aiplatform.eventstore.store import create_pool
    from aiplatform.storage import blob_store_from_settings

    async def run() -> ImportReport:
        pool = await create_pool(settings.require_database_url(), max_size=2)
        try:
            return await import_v1(pool, blob_store_from_settings(settings), path)
        finally:
            await pool.close()

    if not path.is_file():
        print(f"aiplatform import-v1: {path} is not a file")
        return 1
    try:
        report = asyncio.run(run())
    except (OSError, ValueError) as error:
        print(f"aiplatform import-v1: {error}")
        return 1
    for line in report.lines():
        print(line)
    return 0
