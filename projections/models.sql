-- Read model: the model registry (filled by aiplatform.projectors.models from `model-*`).
CREATE TABLE models (
    id            UUID PRIMARY KEY,
    project_id    UUID NOT NULL,
    name          TEXT NOT NULL,
    version       INT NOT NULL,
    framework     TEXT NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    metrics       JSONB NOT NULL,
    source_job_id TEXT,
    card          JSONB NOT NULL,
    stage         TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name, version)
);
CREATE INDEX models_project ON models (project_id, name, version DESC);
