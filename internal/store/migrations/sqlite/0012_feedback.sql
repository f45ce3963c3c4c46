-- 0012_feedback: people's ratings of runs (store.Feedback), what
-- POST /v1/runs/{id}/feedback writes and GET /v1/feedback lists and sums.
--
--   * one row per run and API key: (tenant, run_id, key) is unique, a later
--     feedback by the same key replaces the row (an upsert); key is the id
--     of the API key that gave it, '' with authentication off;
--   * id: "fb_" and a UUIDv7, kept when the row is replaced;
--   * rating: +1 or -1; previous_rating: the rating the last replacement
--     overwrote (0: never replaced); revision: 1, then +1 per replacement;
--   * tags: a JSON array of strings, as TEXT;
--   * created_at: the first feedback; updated_at: the current rating's time
--     (INTEGER unix microseconds, UTC); day: updated_at's UTC day,
--     'YYYY-MM-DD', what the summary groups by. Lists, filters, the summary
--     and retention (retention.usage) all go by updated_at.
-- No foreign key to runs: feedback outlives the runs it rates.

CREATE TABLE feedback (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    key             TEXT    NOT NULL DEFAULT '',
    agent           TEXT    NOT NULL,
    rating          INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    previous_rating INTEGER NOT NULL DEFAULT 0 CHECK (previous_rating IN (-1, 0, 1)),
    revision        INTEGER NOT NULL DEFAULT 1,
    comment         TEXT    NOT NULL DEFAULT '',
    tags            TEXT    NOT NULL DEFAULT '[]',
    day             TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
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
