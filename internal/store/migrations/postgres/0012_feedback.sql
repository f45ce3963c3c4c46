-- 0012_feedback: people's ratings of runs (store.Feedback), what
-- POST /v1/runs/{id}/feedback writes and GET /v1/feedback lists and sums.
--
-- The PostgreSQL twin of sqlite/0012_feedback.sql:
--   * one row per run and API key: (tenant, run_id, key) is unique, a later
--     feedback by the same key replaces the row (an upsert); key is the id
--     of the API key that gave it, '' with authentication off;
--   * id: "fb_" and a UUIDv7, kept when the row is replaced;
--   * rating: +1 or -1; previous_rating: the rating the last replacement
--     overwrote (0: never replaced); revision: 1, then +1 per replacement;
--   * tags: a JSON array of strings, as text (stored byte for byte);
--   * created_at: the first feedback; updated_at: the current rating's
--     time; day: updated_at's UTC day, 'YYYY-MM-DD', what the summary
--     groups by. Lists, filters, the summary and retention
--     (retention.usage) all go by updated_at.
-- No foreign key to runs: feedback outlives the runs it rates.

CREATE TABLE feedback (
    id              text        NOT NULL PRIMARY KEY,
    tenant          text        NOT NULL,
    run_id          text        NOT NULL,
    key             text        NOT NULL DEFAULT '',
    agent           text        NOT NULL,
    rating          smallint    NOT NULL CHECK (rating IN (-1, 1)),
    previous_rating smallint    NOT NULL DEFAULT 0 CHECK (previous_rating IN (-1, 0, 1)),
    revision        integer     NOT NULL DEFAULT 1,
    comment         text        NOT NULL DEFAULT '',
    tags            text        NOT NULL DEFAULT '[]',
    day             text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- PutFeedback's upsert: one row per run and key.
CREATE UNIQUE INDEX feedback_tenant_run_key ON feedback (tenant, run_id, key);
-- ListFeedback (newest first, cursor) and SummarizeFeedback: a tenant's
-- rows by time.
CREATE INDEX feedback_tenant_updated_at ON feedback (tenant, updated_at, id);
-- The same for one agent (a dashboard's or console's usual filter).
CREATE INDEX feedback_tenant_agent_updated_at ON feedback (tenant, agent, updated_at, id);
-- DeleteFeedback (retention): the oldest rows first.
CREATE INDEX feedback_updated_at ON feedback (updated_at);
