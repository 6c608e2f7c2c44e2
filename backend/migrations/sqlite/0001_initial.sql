-- Orchestra backend schema (SQLite). Times are Unix milliseconds; JSON values are stored as text.
CREATE TABLE agents (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    capabilities TEXT    NOT NULL, -- JSON array of strings
    metadata     TEXT    NOT NULL, -- JSON value
    status       TEXT    NOT NULL,
    last_seen    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sessions (
    id         TEXT    NOT NULL PRIMARY KEY,
    owner      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_owner ON sessions (owner, id);

CREATE TABLE tasks (
    id         TEXT    NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (id),
    tool       TEXT    NOT NULL,
    prompt     TEXT    NOT NULL,
    cwd        TEXT,
    requires   TEXT    NOT NULL, -- JSON array of strings
    priority   INTEGER NOT NULL,
    agent_id   TEXT,
    state      TEXT    NOT NULL,
    result     TEXT,             -- JSON value
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tasks_by_session ON tasks (session_id, id);
CREATE INDEX tasks_by_agent ON tasks (agent_id, id);
CREATE INDEX tasks_by_state ON tasks (state, id);

-- Append-only; (task_id, seq) is the idempotency key of every append.
CREATE TABLE task_events (
    task_id TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    data    TEXT    NOT NULL, -- JSON value, stored as sent
    at      INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
