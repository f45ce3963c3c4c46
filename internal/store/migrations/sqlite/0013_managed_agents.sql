-- 0013_managed_agents: the Managed Agents face (store.Managed): agents and
-- their versions, environments, sessions.
--
--   * tenant '' owns the agents of agentd's configuration file: every tenant
--     sees them, none may change them through the API.
--   * config, data: JSON of package managed (the version's agent
--     configuration; an environment's name, description, config and
--     metadata; a session's title, metadata and budget), stored byte for
--     byte.
--   * times: INTEGER unix microseconds, UTC; archived_at NULL while not
--     archived.
--   * a session owns its conversation (conversation_id): deleting the
--     session deletes the conversation. No foreign key: a conversation
--     deleted on its own (DELETE /v1/conversations/{id}) leaves the
--     session, whose next turn starts a new history.

CREATE TABLE managed_agents (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    -- the current (latest) version; its row is in managed_agent_versions
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    archived_at INTEGER
);

-- ListManagedAgents: newest first, per tenant.
CREATE INDEX managed_agents_tenant ON managed_agents (tenant, created_at, id);

CREATE TABLE managed_agent_versions (
    agent_id   TEXT    NOT NULL REFERENCES managed_agents (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    config     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE managed_environments (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    archived_at INTEGER
);

CREATE INDEX managed_environments_tenant ON managed_environments (tenant, created_at, id);

CREATE TABLE managed_sessions (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    agent_id        TEXT    NOT NULL,
    agent_version   INTEGER NOT NULL,
    environment_id  TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    data            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    archived_at     INTEGER
);

-- ListManagedSessions: newest (or oldest) first, per tenant.
CREATE INDEX managed_sessions_tenant ON managed_sessions (tenant, created_at, id);
CREATE UNIQUE INDEX managed_sessions_conversation ON managed_sessions (conversation_id);
