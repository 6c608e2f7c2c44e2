-- Orchestra backend schema (PostgreSQL). Times are Unix milliseconds; JSON values are stored as
-- text (opaque to the database: written and read back as sent).
CREATE TABLE agents (
    id           TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL,
    capabilities TEXT   NOT NULL,
    metadata     TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    last_seen    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id         TEXT   NOT NULL PRIMARY KEY,
    owner      TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_owner ON sessions (owner, id);

CREATE TABLE tasks (
    id         TEXT    NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (id),
    tool       TEXT    NOT NULL,
    prompt     TEXT    NOT NULL,
    cwd        TEXT,
    requires   TEXT    NOT NULL,
    priority   INTEGER NOT NULL,
    agent_id   TEXT,
    state      TEXT    NOT NULL,
    result     TEXT,
    version    BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX tasks_by_session ON tasks (session_id, id);
CREATE INDEX tasks_by_agent ON tasks (agent_id, id);
CREATE INDEX tasks_by_state ON tasks (state, id);

CREATE TABLE task_events (
    task_id TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    data    TEXT   NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
