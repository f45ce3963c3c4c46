-- 0001_init: conversations, messages, runs, run events, checkpoints.
--
-- The PostgreSQL twin of sqlite/0001_init.sql: same tables, columns,
-- keys and indexes, adapted to the dialect:
--   * timestamps are timestamptz (microsecond precision, like SQLite's
--     INTEGER unix microseconds); NULL means "zero time";
--   * JSON is json, not jsonb: json keeps the text byte for byte as given
--     (jsonb would reorder keys and drop whitespace); NULL means nil;
--   * SQLite INTEGER (64-bit) is bigint, REAL is double precision;
--   * ids are text COLLATE "C", so that they sort byte-wise as in SQLite
--     whatever the database's collation (ListRuns pages by id).
-- The tables are created in the first schema of the search_path.

CREATE TABLE conversations (
    id         text COLLATE "C" NOT NULL PRIMARY KEY,
    tenant     text        NOT NULL,
    agent      text        NOT NULL,
    -- optimistic-concurrency token, +1 per AppendMessages
    version    bigint      NOT NULL DEFAULT 0,
    -- seq the next appended message gets; never decreases, so seqs are not
    -- reused after trimming
    next_seq   bigint      NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz
);

CREATE INDEX conversations_expires_at ON conversations (expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE messages (
    conversation_id text COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL,
    role            text        NOT NULL,
    content         json,
    tokens          bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE runs (
    id              text COLLATE "C" NOT NULL PRIMARY KEY,
    tenant          text             NOT NULL,
    agent           text             NOT NULL,
    -- no foreign key: a run outlives its conversation's expiry
    conversation_id text COLLATE "C" NOT NULL DEFAULT '',
    status          text             NOT NULL,
    input           json,
    output          json,
    error           text             NOT NULL DEFAULT '',
    attempt         bigint           NOT NULL DEFAULT 0,
    steps           bigint           NOT NULL DEFAULT 0,
    input_tokens    bigint           NOT NULL DEFAULT 0,
    output_tokens   bigint           NOT NULL DEFAULT 0,
    cost_usd        double precision NOT NULL DEFAULT 0,
    idempotency_key text             NOT NULL DEFAULT '',
    created_at      timestamptz      NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz
);

CREATE UNIQUE INDEX runs_tenant_idempotency_key ON runs (tenant, idempotency_key)
    WHERE idempotency_key <> '';

CREATE INDEX runs_conversation_id ON runs (conversation_id)
    WHERE conversation_id <> '';

CREATE TABLE run_events (
    run_id     text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL,
    type       text        NOT NULL,
    data       json,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE checkpoints (
    run_id     text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step       bigint      NOT NULL,
    state      json,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, step)
);
