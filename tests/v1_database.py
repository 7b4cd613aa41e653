"""A generated v1 database (the layout of docs/import-v1.md) with every table populated, and a
few rows that v2 must refuse."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT NOT NULL,
    full_name TEXT, hashed_password TEXT NOT NULL, role TEXT NOT NULL DEFAULT 'user',
    is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL
);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, description TEXT, owner_id INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'active', config TEXT, tags TEXT, created_at TEXT NOT NULL,
    updated_at TEXT
);
CREATE TABLE project_members (
    project_id INTEGER NOT NULL, user_id INTEGER NOT NULL, role TEXT NOT NULL,
    created_at TEXT NOT NULL, PRIMARY KEY (project_id, user_id)
);
CREATE TABLE experiments (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT,
    base_model TEXT, task_type TEXT, config TEXT, status TEXT NOT NULL DEFAULT 'draft',
    metrics TEXT, created_by INTEGER NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT,
    file_path TEXT NOT NULL, file_size INTEGER NOT NULL, file_hash TEXT NOT NULL,
    row_count INTEGER, format TEXT NOT NULL, created_by INTEGER NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, name TEXT NOT NULL,
    version INTEGER NOT NULL, framework TEXT NOT NULL, file_path TEXT NOT NULL,
    file_size INTEGER NOT NULL, file_hash TEXT NOT NULL, metrics TEXT,
    stage TEXT NOT NULL DEFAULT 'none', created_by INTEGER NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, task_type TEXT NOT NULL,
    name TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 5, config TEXT,
    dataset_id INTEGER, model_id INTEGER, error TEXT, created_by INTEGER NOT NULL,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT
);
"""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Files next to the database, at the paths its rows name (notes.txt is missing on purpose, and
# tampered.csv no longer matches its row).
FILES = {
    "data/customers.csv": "id,label\n1,yes\n2,no\n",
    "models/1.safetensors": "weights one",
    "models/2.safetensors": "weights two",
    "data/tampered.csv": "id,label\n1,changed after v1 hashed it\n",
}


def write_v1_database(path: Path, first_id: int = 1, suffix: str = "") -> dict[str, int]:
    """Writes the database; returns how many rows of each table v2 should refuse. Ids start at
    `first_id` and usernames end with `suffix`, so that several databases can be imported into
    one event store."""
    i = first_id
    for name, content in FILES.items():
        (path.parent / name).parent.mkdir(parents=True, exist_ok=True)
        (path.parent / name).write_text(content)
    customers, one, two = (FILES[k] for k in list(FILES)[:3])
    database = sqlite3.connect(path)
    database.executescript(SCHEMA)
    rows = {
        "users": [
            (
                i,
                f"ada{suffix}",
                f"ada{suffix}@example.com",
                "Ada",
                "$argon2id$v1-hash",
                "admin",
                1,
                "2023-03-01 09:00:00",
            ),
            (
                i + 1,
                f"bob{suffix}",
                f"bob{suffix}@example.com",
                None,
                "pbkdf2:sha256$x",
                "user",
                1,
                "2023-03-02 10:00:00",
            ),
            (
                i + 2,
                f"cy{suffix}",
                f"cy{suffix}@example.com",
                "Cy",
                "pbkdf2:sha256$y",
                "user",
                0,
                "2023-03-03 11:00:00",
            ),
            # Refused: a username v2 does not allow, and an email that is no email.
            (
                i + 3,
                f"no spaces{suffix}",
                f"x{suffix}@example.com",
                "",
                "h",
                "user",
                1,
                "2023-03-04 12:00:00",
            ),
            (i + 4, f"dora{suffix}", "not-an-email", "", "h", "user", 1, "2023-03-05 12:00:00"),
        ],
        "projects": [
            (
                i,
                "churn",
                "predict churn",
                i,
                "active",
                json.dumps({"seed": 1}),
                json.dumps(["tabular"]),
                "2023-04-01 08:00:00",
                None,
            ),
            (i + 1, "old", "", i + 1, "archived", None, None, "2023-04-02 08:00:00", None),
            # Refused: its owner was refused; and config that is not JSON.
            (i + 2, "orphan", "", i + 3, "active", None, None, "2023-04-03 08:00:00", None),
            (i + 3, "broken", "", i, "active", "{not json", None, "2023-04-04 08:00:00", None),
        ],
        "project_members": [
            (i, i + 1, "developer", "2023-04-05 08:00:00"),
            (i, i + 2, "viewer", "2023-04-05 08:00:00"),
            (i + 1, i, "maintainer", "2023-04-05 08:00:00"),
            # Refused: a role v2 does not have.
            (i, i + 4, "janitor", "2023-04-05 08:00:00"),
        ],
        "experiments": [
            (
                i,
                i,
                "baseline",
                "",
                None,
                "classification",
                json.dumps({"lr": 0.1}),
                "completed",
                json.dumps({"accuracy": 0.9}),
                i,
                "2023-05-01 08:00:00",
            ),
            (
                i + 1,
                i,
                "draft one",
                None,
                None,
                None,
                None,
                "draft",
                None,
                i + 1,
                "2023-05-02 08:00:00",
            ),
            (
                i + 2,
                i + 1,
                "shelved",
                None,
                None,
                None,
                None,
                "archived",
                None,
                i,
                "2023-05-03 08:00:00",
            ),
            # Refused: a status v1 never had.
            (i + 3, i, "weird", None, None, None, None, "exploded", None, i, "2023-05-04 08:00:00"),
        ],
        "datasets": [
            (
                i,
                i,
                "customers",
                "",
                "data/customers.csv",
                len(customers),
                _sha(customers),
                2,
                "csv",
                i,
                "2023-06-01 08:00:00",
            ),
            (
                i + 1,
                i,
                "notes",
                None,
                "data/notes.txt",
                300,
                _sha("notes"),
                None,
                "text",
                i + 1,
                "2023-06-02 08:00:00",
            ),
            # Refused: a hash that is no sha256.
            (i + 2, i, "bad", None, "data/bad.csv", 1, "abc", 1, "csv", i, "2023-06-03 08:00:00"),
            # Refused: its file changed since v1 recorded its size and hash.
            (
                i + 3,
                i,
                "tampered",
                None,
                "data/tampered.csv",
                38,
                _sha("v1"),
                1,
                "csv",
                i,
                "2023-06-04 08:00:00",
            ),
        ],
        "models": [
            (
                i,
                i,
                "churn-mlp",
                1,
                "safetensors",
                "models/1.safetensors",
                len(one),
                _sha(one),
                json.dumps({"accuracy": 0.88}),
                "archived",
                i,
                "2023-07-01 08:00:00",
            ),
            (
                i + 1,
                i,
                "churn-mlp",
                2,
                "safetensors",
                "models/2.safetensors",
                len(two),
                _sha(two),
                json.dumps({"accuracy": 0.91}),
                "production",
                i,
                "2023-07-02 08:00:00",
            ),
            # Refused: a framework v2 cannot serve.
            (
                i + 2,
                i,
                "tf-model",
                1,
                "tensorflow",
                "models/3.pb",
                10,
                _sha("m3"),
                None,
                "none",
                i,
                "2023-07-03 08:00:00",
            ),
        ],
        "tasks": [
            (
                i,
                i,
                "training",
                "train churn",
                "completed",
                1,
                json.dumps(
                    {
                        "template": "tabular-classifier",
                        "hyperparameters": {"epochs": 3},
                        "metrics": {"accuracy": 0.91},
                    }
                ),
                i,
                i + 1,
                None,
                i,
                "2023-07-02 07:00:00",
                "2023-07-02 07:00:05",
                "2023-07-02 07:30:00",
            ),
            (
                i + 1,
                i,
                "training",
                "train again",
                "failed",
                5,
                json.dumps({"template": "tabular-classifier"}),
                i,
                None,
                "out of memory",
                i + 1,
                "2023-07-03 07:00:00",
                None,
                "2023-07-03 07:01:00",
            ),
            (
                i + 2,
                i,
                "training",
                "never mind",
                "cancelled",
                9,
                json.dumps({"template": "tabular-classifier"}),
                i,
                None,
                None,
                i,
                "2023-07-04 07:00:00",
                None,
                None,
            ),
            # Refused: still running, inference, and no template.
            (
                i + 3,
                i,
                "training",
                "running",
                "running",
                5,
                json.dumps({"template": "tabular-classifier"}),
                i,
                None,
                None,
                i,
                "2023-07-05 07:00:00",
                None,
                None,
            ),
            (
                i + 4,
                i,
                "inference",
                "predict",
                "completed",
                5,
                None,
                None,
                i,
                None,
                i,
                "2023-07-05 08:00:00",
                None,
                None,
            ),
            (
                i + 5,
                i,
                "training",
                "no template",
                "failed",
                5,
                json.dumps({}),
                i,
                None,
                None,
                i,
                "2023-07-05 09:00:00",
                None,
                None,
            ),
        ],
    }
    for table, values in rows.items():
        marks = ", ".join("?" * len(values[0]))
        database.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    database.commit()
    database.close()
    return {
        "users": 2,
        "projects": 2,
        "project_members": 1,
        "experiments": 1,
        "datasets": 2,
        "models": 1,
        "tasks": 3,
    }
