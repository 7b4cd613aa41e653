"""The rows of a v1 database (docs/import-v1.md), as the importer accepts them.

SQLite keeps whatever a row holds, so every row is checked here first: a row that does not fit
is refused with the reason msgspec gives, and the import goes on.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from aiplatform.domain.jobs import PRIORITIES

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")]
Email = Annotated[str, msgspec.Meta(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"\S")]


class V1User(msgspec.Struct, kw_only=True):
    id: int
    username: Username
    email: Email
    full_name: str | None = None
    hashed_password: str
    role: Literal["admin", "user"] = "user"
    is_active: bool = True
    created_at: datetime


class V1Project(msgspec.Struct, kw_only=True):
    id: int
    name: Name
    description: str | None = None
    owner_id: int
    status: Literal["active", "archived"] = "active"
    config: dict[str, Any] = {}
    tags: list[str] = []
    created_at: datetime


class V1Member(msgspec.Struct, kw_only=True):
    project_id: int
    user_id: int
    role: Literal["owner", "maintainer", "developer", "viewer"]
    created_at: datetime


class V1Experiment(msgspec.Struct, kw_only=True):
    id: int
    project_id: int
    name: Name
    description: str | None = None
    base_model: str | None = None
    task_type: str | None = None
    config: dict[str, Any] = {}
    status: Literal["draft", "running", "completed", "failed", "cancelled", "archived"] = "draft"
    metrics: dict[str, float] = {}
    created_by: int
    created_at: datetime


class V1Dataset(msgspec.Struct, kw_only=True):
    id: int
    project_id: int
    name: Name
    description: str | None = None
    file_path: str
    file_size: Annotated[int, msgspec.Meta(ge=0)]
    file_hash: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    row_count: Annotated[int, msgspec.Meta(ge=0)] | None = None
    format: Literal["csv", "jsonl", "parquet", "text"]
    created_by: int
    created_at: datetime


class V1Model(msgspec.Struct, kw_only=True):
    id: int
    project_id: int
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^/]+$")]
    version: Annotated[int, msgspec.Meta(ge=1)]
    framework: Literal["pytorch", "safetensors"]
    file_path: str
    file_size: Annotated[int, msgspec.Meta(ge=0)]
    file_hash: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    metrics: dict[str, float] = {}
    stage: Literal["none", "staging", "production", "archived"] = "none"
    created_by: int
    created_at: datetime


class V1Task(msgspec.Struct, kw_only=True):
    id: int
    project_id: int
    task_type: Literal["training", "inference"]
    name: Name
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    priority: int = 5
    config: dict[str, Any] = {}
    dataset_id: int | None = None
    model_id: int | None = None
    error: str | None = None
    created_by: int
    created_at: datetime
    finished_at: datetime | None = None


# Columns that hold JSON text in SQLite.
_JSON_COLUMNS = frozenset({"config", "tags", "metrics"})


class RowError(ValueError):
    """A row that does not fit its table's layout; the message says which column and why."""


def parse_row(row: sqlite3.Row, kind: type[msgspec.Struct]) -> Any:
    document: dict[str, Any] = {}
    for column in row.keys():  # noqa: SIM118  (sqlite3.Row has no __iter__ over its names)
        value = row[column]
        if column in _JSON_COLUMNS and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise RowError(f"{column} is not valid JSON") from None
        if value is not None:
            document[column] = value
    try:
        parsed = msgspec.convert(document, kind, strict=False)
    except msgspec.ValidationError as error:
        raise RowError(str(error)) from None
    _times_in_utc(parsed)
    if isinstance(parsed, V1Task) and parsed.priority not in PRIORITIES:
        raise RowError(f"priority must be one of {', '.join(map(str, PRIORITIES))}")
    return parsed


def _times_in_utc(row: msgspec.Struct) -> None:
    """v1 wrote naive UTC times."""
    for field in ("created_at", "finished_at"):
        value = getattr(row, field, None)
        if isinstance(value, datetime) and value.tzinfo is None:
            setattr(row, field, value.replace(tzinfo=UTC))
