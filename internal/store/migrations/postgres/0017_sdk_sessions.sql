-- 0018_sdk_sessions: the Claude Agent SDK session transcripts hosted
-- programs mirror to agentd (store.SDKSessions, docs/agent-sdk.md), what
-- the SessionStore adapter's POST and GET /agentd/v1/sdk-sessions/{id}/entries
-- write and read.
--
-- The PostgreSQL twin of sqlite/0018_sdk_sessions.sql:
--   * one row per transcript entry (one JSONL line of the SDK): seq orders
--     them (global, increasing); a session is (tenant, session_id, subpath),
--     subpath '' for the main transcript;
--   * uuid: the entry's "uuid" ('' when it has none): unique per session
--     when not '', so the SDK's retried appends are stored once;
--   * conversation_id, run_id: the run whose program appended (from its
--     run key), how the next turn finds the conversation's session;
--   * entry: the JSON object as text (stored byte for byte).

CREATE TABLE sdk_session_entries (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text        NOT NULL,
    session_id      text        NOT NULL,
    subpath         text        NOT NULL DEFAULT '',
    uuid            text        NOT NULL DEFAULT '',
    conversation_id text        NOT NULL DEFAULT '',
    run_id          text        NOT NULL DEFAULT '',
    entry           text        NOT NULL,
    created_at      timestamptz NOT NULL
);

-- LoadSDKSession: a session's entries in order; ListSDKSessionSubpaths.
CREATE INDEX sdk_session_entries_session ON sdk_session_entries (tenant, session_id, subpath, seq);
-- Dedup by the entry's uuid.
CREATE UNIQUE INDEX sdk_session_entries_uuid ON sdk_session_entries (tenant, session_id, subpath, uuid) WHERE uuid <> '';
-- LatestSDKSession: a conversation's last appended entry.
CREATE INDEX sdk_session_entries_conversation ON sdk_session_entries (tenant, conversation_id, seq) WHERE conversation_id <> '';
-- DeleteSDKSessions (retention): the oldest entries first.
CREATE INDEX sdk_session_entries_created_at ON sdk_session_entries (created_at);
