"""Reading projects: Redis first, the read-model table when Redis misses or is down."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from aiplatform.cache import (
    TTL_PROJECT,
    TTL_PROJECT_LIST,
    Cache,
    VersionedEntry,
    versioned_payload,
)
from aiplatform.projectors.projects import list_generation_key, project_key
from aiplatform.projectors.read_models import ReadModel, load_read_model

# Start-up warms the cache with at most this many active projects, newest first.
WARM_UP_LIMIT = 1000


class ProjectView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str
    description: str
    config: dict[str, Any]
    tags: list[str]
    status: str
    owner_id: str
    members: dict[str, str]  # user id -> project role
    version: int
    created_at: datetime
    updated_at: datetime


class ProjectFilters(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    tag: str | None = None
    owner_id: str | None = None
    q: str | None = None
    # Only projects this user is a member of; None for everything (admins).
    member_id: str | None = None
    page: int = 1
    limit: int = 20


class ProjectPage(msgspec.Struct, frozen=True):
    items: list[ProjectView]
    total: int


_COLUMNS = (
    "id, name, description, config::text AS config, tags::text AS tags, status, owner_id, "
    "version, created_at, updated_at, "
    "(SELECT coalesce(jsonb_object_agg(m.user_id, m.role), '{{}}') FROM {members} m "
    "WHERE m.project_id = p.id)::text AS members"
)
_encoder = msgspec.json.Encoder()
_view_decoder = msgspec.json.Decoder(ProjectView)
_page_decoder = msgspec.json.Decoder(ProjectPage)


def _view(row: asyncpg.Record) -> ProjectView:
    return ProjectView(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        config=msgspec.json.decode(row["config"]),
        tags=msgspec.json.decode(row["tags"]),
        status=row["status"],
        owner_id=row["owner_id"],
        members=msgspec.json.decode(row["members"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class ProjectQueries:
    def __init__(self, pool: asyncpg.Pool, cache: Cache, read_model: ReadModel | None = None):
        self.pool = pool
        self.cache = cache
        self.read_model = read_model or load_read_model("projects")
        self.table = f"{self.read_model.table('projects')} p"
        self.members = self.read_model.table("project_members")
        self.columns = _COLUMNS.format(members=self.read_model.table("project_members"))

    def cache_key(self, project_id: uuid.UUID) -> str:
        return project_key(self.cache, self.read_model, str(project_id))

    async def get(
        self, project_id: uuid.UUID, *, fresh: bool = False, cached: bytes | None = None
    ) -> ProjectView | None:
        """`fresh` skips the cache: a read-your-writes read has just waited for the table, and
        the cache is refreshed only after the projector commits. `cached` is the cache entry
        when the caller has read it already."""
        if not fresh:
            payload = (
                versioned_payload(cached)
                if cached
                else await self.cache.get_versioned(self.cache_key(project_id))
            )
            if payload is not None:
                return _view_decoder.decode(payload)
        row = await self.pool.fetchrow(
            f"SELECT {self.columns} FROM {self.table} WHERE id = $1", project_id
        )
        if row is None:
            return None
        view = _view(row)
        await self.cache.set_versioned([self._entry(view)], TTL_PROJECT)
        return view

    def _entry(self, view: ProjectView) -> VersionedEntry:
        cache_key = project_key(self.cache, self.read_model, str(view.id))
        return VersionedEntry(cache_key, view.version, _encoder.encode(view))

    async def list(self, filters: ProjectFilters, *, fresh: bool = False) -> ProjectPage:
        if fresh:
            return await self._list_from_table(filters)
        generation = await self.cache.generation(list_generation_key(self.cache, self.read_model))
        cache_key = None
        if generation is not None:
            digest = hashlib.sha256(_encoder.encode(filters)).hexdigest()[:24]
            cache_key = self.cache.key(
                "projects", self.read_model.version, "list", str(generation), digest
            )
            cached = await self.cache.get(cache_key)
            if cached is not None:
                return _page_decoder.decode(cached)
        page = await self._list_from_table(filters)
        if cache_key is not None:
            await self.cache.set(cache_key, _encoder.encode(page), TTL_PROJECT_LIST)
        return page

    async def _list_from_table(self, filters: ProjectFilters) -> ProjectPage:
        where = (
            "($1::text IS NULL OR status = $1) "
            "AND ($2::text IS NULL OR tags @> jsonb_build_array($2::text)) "
            "AND ($3::text IS NULL OR owner_id = $3) "
            "AND ($4::text IS NULL OR name ILIKE $4) "
            f"AND ($5::text IS NULL OR id IN (SELECT project_id FROM {self.members} "
            "WHERE user_id = $5))"
        )
        arguments = (
            filters.status,
            filters.tag,
            filters.owner_id,
            _like_pattern(filters.q) if filters.q else None,
            filters.member_id,
        )
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {self.columns} FROM {self.table} WHERE {where} "
                "ORDER BY created_at DESC, id LIMIT $6 OFFSET $7",
                *arguments,
                filters.limit,
                (filters.page - 1) * filters.limit,
            )
            total = await connection.fetchval(
                f"SELECT count(*) FROM {self.table} WHERE {where}", *arguments
            )
        return ProjectPage(items=[_view(row) for row in rows], total=int(total))

    async def warm_cache(self) -> int:
        """Loads the newest active projects into Redis, so the first reads after a start hit."""
        rows = await self.pool.fetch(
            f"SELECT {self.columns} FROM {self.table} WHERE status = 'active' "
            "ORDER BY created_at DESC LIMIT $1",
            WARM_UP_LIMIT,
        )
        await self.cache.set_versioned([self._entry(_view(row)) for row in rows], TTL_PROJECT)
        return len(rows)
