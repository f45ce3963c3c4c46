-- 0018_agent_definitions: a run keeps the definition of the agent it was
-- submitted under (docs/reliability.md, R2b).
--
-- The PostgreSQL twin of sqlite/0018_agent_definitions.sql:
--   * runs.agent_digest: the SHA-256 (hex) of the configured agent's
--     definition at submit ('' for older runs, API-defined agents and
--     hosted programs); a constant default does not rewrite the table;
--   * agent_definitions: each definition once, by its digest: the JSON
--     snapshot a worker whose configuration differs runs the run with.

ALTER TABLE runs ADD COLUMN agent_digest text NOT NULL DEFAULT '';

CREATE TABLE agent_definitions (
    digest     text COLLATE "C" PRIMARY KEY,
    agent      text NOT NULL,
    definition text NOT NULL,
    created_at timestamptz NOT NULL
);
