-- Read model: datasets and their versions (filled by aiplatform.projectors.datasets).
CREATE TABLE datasets (
    id             UUID PRIMARY KEY,
    project_id     UUID NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    latest_version TEXT,
    versions       INT NOT NULL,
    created_by     TEXT NOT NULL,
    version        BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX datasets_project ON datasets (project_id, created_at DESC, id);

CREATE TABLE dataset_versions (
    dataset_id  UUID NOT NULL,
    version     TEXT NOT NULL,
    number      INT NOT NULL,
    parent      TEXT,
    message     TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    rows        BIGINT,
    format      TEXT NOT NULL,
    filename    TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    quality     JSONB,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dataset_id, version)
);
