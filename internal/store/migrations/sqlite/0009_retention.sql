-- 0009_retention: what the retention sweeper (store.Retention) needs.
--
--   * runs_finished_at: finished runs by finish time, the sweep's cutoff;
--     only terminal runs are in it, so queued and running runs are never
--     candidates.
--   * events and checkpoints are found through their run (their primary
--     keys start with run_id).
--   * usage_created_at, audit_created_at: the oldest rows first.
--   * usage_daily: what usage rows become before they are dropped, one
--     row per UTC day, tenant, key, agent and model, with the sums of the
--     rows it replaced (calls: how many). GET /v1/usage adds it to the raw
--     rows, so totals do not change when rows are rolled up.
--   * audit: rows stay append-only (no UPDATE ever) and a row younger than
--     30 days can never be deleted; older rows may be, by the sweeper
--     (retention.audit, at least 720h).

CREATE INDEX runs_finished_at ON runs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'canceled');

CREATE INDEX usage_created_at ON usage (created_at);

CREATE INDEX audit_created_at ON audit (created_at);

CREATE TABLE usage_daily (
    day                         TEXT    NOT NULL,
    tenant                      TEXT    NOT NULL,
    key                         TEXT    NOT NULL,
    agent                       TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    calls                       INTEGER NOT NULL DEFAULT 0,
    input_tokens                INTEGER NOT NULL DEFAULT 0,
    output_tokens               INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    cost_usd                    REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day, key, agent, model)
);

DROP TRIGGER audit_no_delete;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN OLD.created_at > (CAST(strftime('%s', 'now') AS INTEGER) - 30 * 86400) * 1000000
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only: rows younger than 30 days are never deleted');
END;
