-- Read model: training jobs, their metric points and log lines (filled by
-- aiplatform.projectors.jobs from `job-*` streams).
CREATE TABLE jobs (
    id                 UUID PRIMARY KEY,
    project_id         UUID NOT NULL,
    experiment_id      TEXT,
    name               TEXT NOT NULL,
    template           TEXT NOT NULL,
    dataset_id         TEXT NOT NULL,
    dataset_version    TEXT NOT NULL,
    base_model_id      TEXT,
    hyperparameters    JSONB NOT NULL,
    priority           SMALLINT NOT NULL,
    time_limit_s       INT NOT NULL,
    status             TEXT NOT NULL,
    attempt            INT NOT NULL DEFAULT 0,
    cancel_requested   BOOLEAN NOT NULL DEFAULT false,
    retry_reason       TEXT,
    step               BIGINT NOT NULL DEFAULT 0,
    epoch              INT NOT NULL DEFAULT 0,
    total_steps        BIGINT,
    progress           DOUBLE PRECISION NOT NULL DEFAULT 0,
    samples_per_second DOUBLE PRECISION,
    -- The step the current attempt started from and when it last reported progress: the
    -- step rate of this attempt, hence the ETA, comes from them and `started_at`.
    attempt_start_step BIGINT NOT NULL DEFAULT 0,
    progressed_at      TIMESTAMPTZ,
    latest_metrics     JSONB NOT NULL DEFAULT '{}',
    checkpoint_step    BIGINT,
    checkpoint_epoch   INT,
    checkpoint_path    TEXT,
    worker             TEXT,
    devices            JSONB NOT NULL DEFAULT '[]',
    model_id           TEXT,
    error              TEXT,
    traceback          TEXT,
    metrics            JSONB,
    duration_s         DOUBLE PRECISION,
    resource_usage     JSONB,
    log_lines          BIGINT NOT NULL DEFAULT 0,
    submitted_by       TEXT NOT NULL,
    submitted_at       TIMESTAMPTZ NOT NULL,
    started_at         TIMESTAMPTZ,
    finished_at        TIMESTAMPTZ,
    updated_at         TIMESTAMPTZ NOT NULL,
    version            BIGINT NOT NULL
);
CREATE INDEX jobs_submitted ON jobs (submitted_at DESC, id);
CREATE INDEX jobs_project_submitted ON jobs (project_id, submitted_at DESC, id);
CREATE INDEX jobs_status_submitted ON jobs (status, submitted_at DESC, id);
CREATE INDEX jobs_template_submitted ON jobs (template, submitted_at DESC, id);

-- One row per reported point; a resumed attempt that reports a step again replaces it.
CREATE TABLE job_metrics (
    job_id UUID NOT NULL,
    name   TEXT NOT NULL,
    step   BIGINT NOT NULL,
    value  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, name, step)
);

-- `seq` counts a job's lines from 1 without gaps, so a page is a range of it.
CREATE TABLE job_logs (
    job_id  UUID NOT NULL,
    seq     BIGINT NOT NULL,
    time    TIMESTAMPTZ NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
