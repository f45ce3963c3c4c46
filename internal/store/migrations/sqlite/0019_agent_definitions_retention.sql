-- 0019_agent_definitions_retention: the retention sweep deletes stored
-- agent definitions no run references any more (retention.agent_definitions,
-- docs/configuration.md). Its test "does a run still have this digest" is
-- one probe of this index instead of a scan of runs; runs without a digest
-- (API-defined agents, hosted programs, runs from before 0018) are left
-- out of it.
--
-- agent_definitions.created_at now holds the time a definition was last
-- stored (PutAgentDefinition moves it), the sweep's age guard.

CREATE INDEX runs_agent_digest ON runs (agent_digest) WHERE agent_digest <> '';
