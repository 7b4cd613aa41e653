"""Which event store migrations a database has, and which are pending."""

from __future__ import annotations

import asyncpg
import msgspec
from alembic.script import ScriptDirectory

from aiplatform.eventstore.migrations import alembic_config


class Revision(msgspec.Struct, frozen=True, kw_only=True):
    revision: str
    description: str


class MigrationStatus(msgspec.Struct, frozen=True, kw_only=True):
    current: str | None
    head: str | None
    pending: list[Revision]  # oldest first


async def current_revision(pool: asyncpg.Pool) -> str | None:
    exists = await pool.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not exists:
        return None
    revision: str | None = await pool.fetchval("SELECT version_num FROM alembic_version")
    return revision


async def migration_status(pool: asyncpg.Pool, database_url: str) -> MigrationStatus:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    current = await current_revision(pool)
    head = script.get_current_head()
    pending = [
        Revision(revision=r.revision, description=(r.doc or "").strip().splitlines()[0])
        for r in script.iterate_revisions(head, current)
    ]
    pending.reverse()
    return MigrationStatus(current=current, head=head, pending=pending)
