"""Which model line (stream) holds a model id: written with the ModelRegistered event, so a
model can be found by id the moment its registration commits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from aiplatform.eventstore.migrations import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE model_index (
            model_id   UUID PRIMARY KEY,
            project_id UUID NOT NULL,
            name       TEXT NOT NULL
        );
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE model_index;")
