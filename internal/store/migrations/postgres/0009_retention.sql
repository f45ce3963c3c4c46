-- 0009_retention: what the retention sweeper (store.Retention) needs.
--
-- The PostgreSQL twin of sqlite/0009_retention.sql:
--   * runs_finished_at: finished runs by finish time (terminal runs only);
--   * usage_created_at, audit_created_at: the oldest rows first.
--   * usage_daily: usage rows rolled up per UTC day (text 'YYYY-MM-DD'),
--     tenant, key, agent and model before they are dropped;
--   * audit: still no UPDATE ever; DELETE only of rows older than 30 days.

CREATE INDEX runs_finished_at ON runs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'canceled');

CREATE INDEX usage_created_at ON usage (created_at);

CREATE INDEX audit_created_at ON audit (created_at);

CREATE TABLE usage_daily (
    day                         text             NOT NULL,
    tenant                      text             NOT NULL,
    key                         text             NOT NULL,
    agent                       text             NOT NULL,
    model                       text             NOT NULL,
    calls                       bigint           NOT NULL DEFAULT 0,
    input_tokens                bigint           NOT NULL DEFAULT 0,
    output_tokens               bigint           NOT NULL DEFAULT 0,
    cache_creation_input_tokens bigint           NOT NULL DEFAULT 0,
    cache_read_input_tokens     bigint           NOT NULL DEFAULT 0,
    cost_usd                    double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day, key, agent, model)
);

CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.created_at < now() - interval '30 days' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit is append-only: rows younger than 30 days are never deleted';
    END IF;
    RAISE EXCEPTION 'audit is append-only';
END;
$$;
