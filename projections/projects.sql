-- Read model: projects (filled by aiplatform.projectors.projects from `project-*` streams).
-- Installed into a schema named after this file's hash; edit freely, it is rebuilt from the log.
CREATE TABLE projects (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    config        JSONB NOT NULL,
    tags          JSONB NOT NULL,
    status        TEXT NOT NULL,
    owner_id      TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    last_position BIGINT NOT NULL
);
CREATE INDEX projects_status_created ON projects (status, created_at DESC, id);
CREATE INDEX projects_created ON projects (created_at DESC, id);
CREATE INDEX projects_owner ON projects (owner_id);
CREATE INDEX projects_tags ON projects USING gin (tags jsonb_path_ops);

CREATE TABLE project_members (
    project_id UUID NOT NULL,
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id, project_id);
