-- 0018_agent_definitions: a run keeps the definition of the agent it was
-- submitted under, so that a deploy that changes the agent (blue-green, a
-- rolling restart with a new config) never moves a run in flight to the
-- new definition (docs/reliability.md, R2b).
--
--   * runs.agent_digest: the SHA-256 (hex) of the configured agent's
--     definition when the run was submitted ('' for runs from before, for
--     agents defined through the API, which pin agent_version instead,
--     and for hosted programs);
--   * agent_definitions: each definition once, by its digest: the JSON
--     snapshot a worker whose configuration defines the agent differently
--     runs the run with. Rows are never updated; created_at is INTEGER
--     unix microseconds, UTC.

ALTER TABLE runs ADD COLUMN agent_digest TEXT NOT NULL DEFAULT '';

CREATE TABLE agent_definitions (
    digest     TEXT    NOT NULL PRIMARY KEY,
    agent      TEXT    NOT NULL,
    definition TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
