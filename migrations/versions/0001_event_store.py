"""The event store: events, idempotency records, projection checkpoints, and the append function.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from aiplatform.eventstore.migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY,
    transaction_id  XID8     NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       TEXT     NOT NULL,
    stream_version  BIGINT   NOT NULL CHECK (stream_version > 0),
    event_id        UUID     NOT NULL UNIQUE,
    event_type      TEXT     NOT NULL,
    schema_version  SMALLINT NOT NULL DEFAULT 1,
    data            JSONB    NOT NULL,
    metadata        JSONB    NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, stream_version)
);
CREATE UNIQUE INDEX events_global_position ON events (global_position);
-- The catch-up order (DESIGN.md guarantee 2).
CREATE INDEX events_catch_up ON events (transaction_id, global_position);

CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % is not allowed on the event log', TG_OP
        USING ERRCODE = 'AP004';
END $$;
CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

CREATE TABLE processed_commands (
    idempotency_key TEXT PRIMARY KEY,
    request_hash    TEXT,
    stream_id       TEXT NOT NULL,
    first_position  BIGINT,
    last_position   BIGINT,
    stream_version  BIGINT,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX processed_commands_recorded_at ON processed_commands (recorded_at);

CREATE TABLE projection_checkpoints (
    projection            TEXT PRIMARY KEY,
    last_transaction_id   XID8   NOT NULL DEFAULT '0',
    last_global_position  BIGINT NOT NULL DEFAULT 0,
    events_applied        BIGINT NOT NULL DEFAULT 0,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One round trip per command: checks that this is the transaction's first write, records the
-- idempotency key (or returns the first result for a repeated one), checks the expected
-- version and inserts every event of the command with one multi-row INSERT. No table lock and
-- no NOTIFY: both would serialise every writer. Two writers that read the same current version
-- collide on the primary key, the last line of defence.
CREATE FUNCTION append_events(
    p_stream_id        TEXT,
    p_expected_version BIGINT,
    p_idempotency_key  TEXT,
    p_request_hash     TEXT,
    p_event_ids        UUID[],
    p_event_types      TEXT[],
    p_schema_versions  SMALLINT[],
    p_data             JSONB[],
    p_metadata         JSONB[]
) RETURNS TABLE (
    stream_id TEXT, first_position BIGINT, last_position BIGINT, stream_version BIGINT,
    duplicate BOOLEAN, recorded_at TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
DECLARE
    v_current  BIGINT;
    v_previous processed_commands%ROWTYPE;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'append_events must be the first write of its transaction'
            USING ERRCODE = 'AP001';
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO processed_commands AS pc (idempotency_key, request_hash, stream_id)
        VALUES (p_idempotency_key, p_request_hash, p_stream_id)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO v_previous FROM processed_commands pc
             WHERE pc.idempotency_key = p_idempotency_key;
            IF v_previous.request_hash IS DISTINCT FROM p_request_hash THEN
                RAISE EXCEPTION 'idempotency key % was already used for a different request',
                    p_idempotency_key USING ERRCODE = 'AP003';
            END IF;
            RETURN QUERY SELECT v_previous.stream_id, v_previous.first_position,
                                v_previous.last_position, v_previous.stream_version, TRUE,
                                v_previous.recorded_at;
            RETURN;
        END IF;
    END IF;

    -- One statement on the hot path: the version check is the WHERE of the insert (a stale
    -- expected version inserts nothing), and the positions come back from RETURNING.
    RETURN QUERY
    WITH current_version AS (
        SELECT coalesce(max(e.stream_version), 0) AS v FROM events e
         WHERE e.stream_id = p_stream_id
    ), inserted AS (
        INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                            data, metadata)
        SELECT p_stream_id, c.v + u.n, u.id, u.t, u.sv, u.d, u.m
          FROM current_version c,
               unnest(p_event_ids, p_event_types, p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY AS u(id, t, sv, d, m, n)
         WHERE p_expected_version IS NULL OR c.v = p_expected_version
         ORDER BY u.n
        RETURNING events.global_position, events.stream_version
    )
    SELECT p_stream_id, min(i.global_position), max(i.global_position), max(i.stream_version),
           FALSE, now()
      FROM inserted i
    HAVING count(*) > 0;

    IF NOT FOUND THEN
        SELECT coalesce(max(e.stream_version), 0) INTO v_current
          FROM events e WHERE e.stream_id = p_stream_id;
        RAISE EXCEPTION 'stream % is at version %, not the expected %',
            p_stream_id, v_current, p_expected_version
            USING ERRCODE = 'AP002', DETAIL = v_current::text;
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        UPDATE processed_commands pc
           SET (first_position, last_position, stream_version) = (
               SELECT min(e.global_position), max(e.global_position), max(e.stream_version)
                 FROM events e
                WHERE e.stream_id = p_stream_id AND e.event_id = ANY(p_event_ids))
         WHERE pc.idempotency_key = p_idempotency_key;
    END IF;
END $$;
"""

DOWNGRADE = """
DROP FUNCTION append_events;
DROP TABLE projection_checkpoints;
DROP TABLE processed_commands;
DROP TABLE events;
DROP FUNCTION events_are_immutable;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
