-- Read model: users (filled by aiplatform.projectors.users from `user-*` streams).
CREATE TABLE users (
    id            UUID PRIMARY KEY,
    username      TEXT NOT NULL,
    email         TEXT NOT NULL,
    full_name     TEXT NOT NULL,
    system_role   TEXT NOT NULL,
    active        BOOLEAN NOT NULL,
    last_login_at TIMESTAMPTZ,
    version       BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_username ON users (lower(username));
CREATE INDEX users_created ON users (created_at DESC, id);
