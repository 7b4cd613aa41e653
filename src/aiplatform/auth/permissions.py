"""Permissions, and the roles that grant them.

System roles (`admin`, `user`) are on the user; project roles are on a project's members. The
four built-in project roles are fixed here; custom roles are events of `role-<name>` streams.
"""

from __future__ import annotations

from typing import Final, Literal

SystemRole = Literal["admin", "user"]
SYSTEM_ROLES: Final = ("admin", "user")

PROJECT_READ = "project:read"
PROJECT_WRITE = "project:write"
PROJECT_DELETE = "project:delete"
MEMBER_MANAGE = "member:manage"
EXPERIMENT_WRITE = "experiment:write"
DATASET_WRITE = "dataset:write"
TRAINING_SUBMIT = "training:submit"
MODEL_WRITE = "model:write"
INFERENCE_RUN = "inference:run"
AUDIT_READ = "audit:read"

PROJECT_PERMISSIONS: Final = (
    PROJECT_READ,
    PROJECT_WRITE,
    PROJECT_DELETE,
    MEMBER_MANAGE,
    EXPERIMENT_WRITE,
    DATASET_WRITE,
    TRAINING_SUBMIT,
    MODEL_WRITE,
    INFERENCE_RUN,
    AUDIT_READ,
)

BUILTIN_PROJECT_ROLES: Final[dict[str, frozenset[str]]] = {
    "owner": frozenset(PROJECT_PERMISSIONS),
    "maintainer": frozenset(PROJECT_PERMISSIONS) - {PROJECT_DELETE, AUDIT_READ},
    "developer": frozenset(
        {PROJECT_READ, EXPERIMENT_WRITE, DATASET_WRITE, TRAINING_SUBMIT, MODEL_WRITE, INFERENCE_RUN}
    ),
    "viewer": frozenset({PROJECT_READ}),
}

# What a route needs, beyond project permissions: nothing, a valid token, or the admin role.
PUBLIC = "public"
AUTHENTICATED = "authenticated"
ADMIN = "admin:*"
