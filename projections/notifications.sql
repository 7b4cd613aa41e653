-- Read model: users' notifications (filled by aiplatform.projectors.notifications). A
-- notification is projected from the event it tells about; `inbox-*` streams mark them read.
CREATE TABLE notifications (
    -- uuid5 of the source event's id and the recipient: a rebuild finds the same ids.
    id         UUID PRIMARY KEY,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    data       JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    -- The source event's global position: the order of a user's notifications, and the id of
    -- their live messages.
    position   BIGINT NOT NULL,
    read       BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX notifications_user ON notifications (user_id, position DESC);
CREATE INDEX notifications_user_unread ON notifications (user_id, position DESC) WHERE NOT read;

-- What the events that end a job, grant a membership or report on a dataset version do not
-- carry themselves, remembered from the events before them. Ids are kept as the events spell
-- them.
CREATE TABLE job_submissions (
    job_id       TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    submitted_by TEXT NOT NULL
);

CREATE TABLE project_names (
    project_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL
);

CREATE TABLE project_roles (
    project_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);

CREATE TABLE dataset_names (
    dataset_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL
);

CREATE TABLE dataset_uploads (
    dataset_id  TEXT NOT NULL,
    version     TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version)
);
