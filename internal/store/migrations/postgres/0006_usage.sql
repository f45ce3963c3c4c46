-- 0006_usage: one row per model call with its tokens and cost (store.Usage),
-- what GET /v1/usage aggregates.
--
-- The PostgreSQL twin of sqlite/0006_usage.sql:
--   * id: increasing, the order rows were written in;
--   * key: the id of the API key the call was made for; '' until API keys
--     exist (or for calls made without one);
--   * model: the model that answered (a fallback model may have);
--   * tokens by kind as the provider reported them; cost_usd as priced by
--     agentd's pricing table when the call was made (never re-priced);
--   * cached: true when agentd's response cache answered (tokens and cost 0).
-- No foreign key to runs: usage outlives the runs it describes.

CREATE TABLE usage (
    id                          bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at                  timestamptz      NOT NULL,
    tenant                      text             NOT NULL,
    key                         text             NOT NULL DEFAULT '',
    agent                       text             NOT NULL,
    model                       text             NOT NULL,
    run_id                      text             NOT NULL,
    step                        integer          NOT NULL DEFAULT 0,
    input_tokens                bigint           NOT NULL DEFAULT 0,
    output_tokens               bigint           NOT NULL DEFAULT 0,
    cache_creation_input_tokens bigint           NOT NULL DEFAULT 0,
    cache_read_input_tokens     bigint           NOT NULL DEFAULT 0,
    cost_usd                    double precision NOT NULL DEFAULT 0,
    cached                      boolean          NOT NULL DEFAULT false
);

-- SumUsage: a tenant's rows in a time range.
CREATE INDEX usage_tenant_created_at ON usage (tenant, created_at);
