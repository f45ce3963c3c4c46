-- 0019_agent_definitions_retention: the PostgreSQL twin of
-- sqlite/0019_agent_definitions_retention.sql: a partial index on
-- runs.agent_digest for the retention sweep's "does a run still have this
-- digest" test (retention.agent_definitions). agent_definitions.created_at
-- now holds the time a definition was last stored.

CREATE INDEX runs_agent_digest ON runs (agent_digest) WHERE agent_digest <> '';
