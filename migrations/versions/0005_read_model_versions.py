"""Read-model versions: which version of each read model readers use, which one is being
built beside it, and the DDL each was installed with.

A read model's version is the hash of its `projections/<name>.sql`; `generation` tells apart
the copies of one version (`aiplatform replay` builds a fresh copy beside the one serving).
`checkpoint` names its row in `projection_checkpoints`. The DDL is kept here so
that any process can name the tables of a version whose file its own code no longer has (an
API process still serving the previous version, a worker projecting it during a rebuild). At
most one version per read model is active; a partial unique index says so.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from aiplatform.eventstore.migrations import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE read_model_versions (
            read_model   TEXT NOT NULL,
            version      TEXT NOT NULL,
            generation   INTEGER NOT NULL DEFAULT 0,
            checkpoint   TEXT NOT NULL UNIQUE,
            ddl          TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('building', 'active', 'retired')),
            installed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            activated_at TIMESTAMPTZ,
            retired_at   TIMESTAMPTZ,
            PRIMARY KEY (read_model, version, generation)
        );
        CREATE UNIQUE INDEX read_model_versions_one_active ON read_model_versions (read_model)
            WHERE state = 'active';
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE read_model_versions;")
