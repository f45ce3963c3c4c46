-- 0001_init: conversations, messages, runs, run events, checkpoints.
--
-- Portable on purpose: a PostgreSQL backend mirrors these tables and columns
-- one to one. Conventions:
--   * timestamps are INTEGER unix microseconds, UTC (PostgreSQL: timestamptz,
--     which has the same microsecond precision); NULL means "zero time";
--   * JSON is stored as TEXT, byte for byte as given (PostgreSQL: json or
--     bytea, not jsonb, which would reformat it); NULL means nil;
--   * ids and names are TEXT.

CREATE TABLE conversations (
    id         TEXT    NOT NULL PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    -- optimistic-concurrency token, +1 per AppendMessages
    version    INTEGER NOT NULL DEFAULT 0,
    -- seq the next appended message gets; never decreases, so seqs are not
    -- reused after trimming
    next_seq   INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER
);

CREATE INDEX conversations_expires_at ON conversations (expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE messages (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    role            TEXT    NOT NULL,
    content         TEXT,
    tokens          INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE runs (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    agent           TEXT    NOT NULL,
    -- no foreign key: a run outlives its conversation's expiry
    conversation_id TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL,
    input           TEXT,
    output          TEXT,
    error           TEXT    NOT NULL DEFAULT '',
    attempt         INTEGER NOT NULL DEFAULT 0,
    steps           INTEGER NOT NULL DEFAULT 0,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd        REAL    NOT NULL DEFAULT 0,
    idempotency_key TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
);

CREATE UNIQUE INDEX runs_tenant_idempotency_key ON runs (tenant, idempotency_key)
    WHERE idempotency_key <> '';

CREATE INDEX runs_conversation_id ON runs (conversation_id)
    WHERE conversation_id <> '';

CREATE TABLE run_events (
    run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    data       TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE checkpoints (
    run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    state      TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, step)
);
