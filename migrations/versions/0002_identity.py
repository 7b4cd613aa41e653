"""Identity: uniqueness of usernames and emails, credentials, refresh-token families, and the
indexes the audit log filters on.

Secrets stay out of the event log (it is immutable and widely readable): password hashes and
refresh tokens live here, written in the same transaction as the event that changes them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from aiplatform.eventstore.migrations import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE user_accounts (
    user_id       UUID PRIMARY KEY,
    username_key  TEXT NOT NULL UNIQUE,   -- lower(username)
    email_key     TEXT NOT NULL UNIQUE,   -- lower(email)
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    system_role   TEXT NOT NULL,
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE auth_sessions (
    session_id  UUID PRIMARY KEY,          -- a refresh-token family
    user_id     UUID NOT NULL REFERENCES user_accounts (user_id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ,
    revoked_why TEXT
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,          -- sha256 of the token; the token itself is never kept
    session_id  UUID NOT NULL REFERENCES auth_sessions (session_id),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE INDEX events_actor ON events ((metadata->>'actor'), global_position);
CREATE INDEX events_recorded_at ON events (recorded_at);
CREATE INDEX events_stream_prefix ON events (stream_id text_pattern_ops, global_position);
"""

DOWNGRADE = """
DROP INDEX events_stream_prefix;
DROP INDEX events_recorded_at;
DROP INDEX events_actor;
DROP TABLE refresh_tokens;
DROP TABLE auth_sessions;
DROP TABLE user_accounts;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
