-- 0013_managed_agents: the Managed Agents face (store.Managed): agents and
-- their versions, environments, sessions.
--
-- The PostgreSQL twin of sqlite/0013_managed_agents.sql:
--   * tenant '' owns the agents of agentd's configuration file: every tenant
--     sees them, none may change them through the API.
--   * config, data: JSON of package managed, stored byte for byte (json,
--     not jsonb).
--   * archived_at NULL while not archived.
--   * a session owns its conversation (conversation_id): deleting the
--     session deletes the conversation. No foreign key: a conversation
--     deleted on its own (DELETE /v1/conversations/{id}) leaves the
--     session, whose next turn starts a new history.

CREATE TABLE managed_agents (
    id          text        NOT NULL PRIMARY KEY,
    tenant      text        NOT NULL,
    version     bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    archived_at timestamptz
);

CREATE INDEX managed_agents_tenant ON managed_agents (tenant, created_at, id);

CREATE TABLE managed_agent_versions (
    agent_id   text        NOT NULL REFERENCES managed_agents (id) ON DELETE CASCADE,
    version    bigint      NOT NULL,
    config     json        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE managed_environments (
    id          text        NOT NULL PRIMARY KEY,
    tenant      text        NOT NULL,
    data        json        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    archived_at timestamptz
);

CREATE INDEX managed_environments_tenant ON managed_environments (tenant, created_at, id);

CREATE TABLE managed_sessions (
    id              text        NOT NULL PRIMARY KEY,
    tenant          text        NOT NULL,
    agent_id        text        NOT NULL,
    agent_version   bigint      NOT NULL,
    environment_id  text        NOT NULL,
    conversation_id text        NOT NULL,
    status          text        NOT NULL,
    data            json        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    archived_at     timestamptz
);

CREATE INDEX managed_sessions_tenant ON managed_sessions (tenant, created_at, id);
CREATE UNIQUE INDEX managed_sessions_conversation ON managed_sessions (conversation_id);
