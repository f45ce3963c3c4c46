-- 0006_usage: one row per model call with its tokens and cost (store.Usage),
-- what GET /v1/usage aggregates.
--
--   * id: increasing, the order rows were written in;
--   * created_at: INTEGER unix microseconds, UTC, like every timestamp;
--   * key: the id of the API key the call was made for; '' until API keys
--     exist (or for calls made without one);
--   * model: the model that answered (a fallback model may have);
--   * tokens by kind as the provider reported them; cost_usd as priced by
--     agentd's pricing table when the call was made (never re-priced);
--   * cached: 1 when agentd's response cache answered (tokens and cost 0).
-- No foreign key to runs: usage outlives the runs it describes.

CREATE TABLE usage (
    id                          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    created_at                  INTEGER NOT NULL,
    tenant                      TEXT    NOT NULL,
    key                         TEXT    NOT NULL DEFAULT '',
    agent                       TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    run_id                      TEXT    NOT NULL,
    step                        INTEGER NOT NULL DEFAULT 0,
    input_tokens                INTEGER NOT NULL DEFAULT 0,
    output_tokens               INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    cost_usd                    REAL    NOT NULL DEFAULT 0,
    cached                      INTEGER NOT NULL DEFAULT 0
);

-- SumUsage: a tenant's rows in a time range.
CREATE INDEX usage_tenant_created_at ON usage (tenant, created_at);
