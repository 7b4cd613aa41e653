"""The training queue: which jobs wait for a worker, in priority order, and which worker
message runs each one.

A row is written in the transaction of the job's JobSubmitted event, so a job the log holds
is never missing from the queue; it is deleted once the job is finished (a row left behind by a
crash is harmless: the next worker to claim it finds the job finished and deletes it).
Dramatiq messages on the `training` queue are only tokens: the worker that gets one claims the
best waiting job (lowest priority number, then oldest), and a redelivered token finds the job
it had claimed. `cancel_requested` is what a running job's worker polls to stop it quickly.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from aiplatform.eventstore.migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE training_queue (
            job_id       UUID PRIMARY KEY,
            priority     SMALLINT NOT NULL,
            submitted    BIGSERIAL NOT NULL,
            queued_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            claimed_by   TEXT UNIQUE,
            claimed_at   TIMESTAMPTZ,
            cancel_requested BOOLEAN NOT NULL DEFAULT false
        );
        CREATE INDEX training_queue_waiting ON training_queue (priority, submitted)
            WHERE claimed_by IS NULL;
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE training_queue;")
