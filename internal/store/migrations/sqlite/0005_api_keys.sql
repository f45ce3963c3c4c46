-- 0005_api_keys: client API keys (store.APIKeys), each owned by a tenant.
--
--   * key_hash: lower-case hex SHA-256 of the whole key; the key itself is
--     never stored. Unique: the lookup of every authenticated request.
--   * prefix: the key's short display prefix (agd_ + 8 characters), not a
--     secret; unique, so that `agentd keys revoke PREFIX` names one key.
--   * scopes: comma-separated (chat, runs, admin).
--   * created_at, revoked_at: INTEGER unix microseconds, UTC; revoked_at
--     NULL while the key is active.

CREATE TABLE api_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    prefix     TEXT    NOT NULL,
    key_hash   TEXT    NOT NULL,
    tenant     TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- GetAPIKeyByHash (every authenticated request) and revoke by prefix.
CREATE UNIQUE INDEX api_keys_key_hash ON api_keys (key_hash);
CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);

-- ListAPIKeys of one tenant.
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at, id);
