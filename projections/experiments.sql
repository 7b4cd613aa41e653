-- Read model: experiments (filled by aiplatform.projectors.experiments from `experiment-*`).
CREATE TABLE experiments (
    id          UUID PRIMARY KEY,
    project_id  UUID NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    base_model  TEXT,
    task_type   TEXT,
    config      JSONB NOT NULL,
    status      TEXT NOT NULL,
    metrics     JSONB NOT NULL,
    created_by  TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX experiments_project ON experiments (project_id, created_at DESC, id);
