-- 0018_sdk_sessions: the Claude Agent SDK session transcripts hosted
-- programs mirror to agentd (store.SDKSessions, docs/agent-sdk.md), what
-- the SessionStore adapter's POST and GET /agentd/v1/sdk-sessions/{id}/entries
-- write and read.
--
--   * one row per transcript entry (one JSONL line of the SDK): seq orders
--     them (global, increasing); a session is (tenant, session_id, subpath),
--     subpath '' for the main transcript;
--   * uuid: the entry's "uuid" ('' when it has none): unique per session
--     when not '', so the SDK's retried appends are stored once;
--   * conversation_id, run_id: the run whose program appended (from its
--     run key), how the next turn finds the conversation's session;
--   * entry: the JSON object as TEXT; created_at: INTEGER unix
--     microseconds, UTC.

CREATE TABLE sdk_session_entries (
    seq             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    tenant          TEXT    NOT NULL,
    session_id      TEXT    NOT NULL,
    subpath         TEXT    NOT NULL DEFAULT '',
    uuid            TEXT    NOT NULL DEFAULT '',
    conversation_id TEXT    NOT NULL DEFAULT '',
    run_id          TEXT    NOT NULL DEFAULT '',
    entry           TEXT    NOT NULL,
    created_at      INTEGER NOT NULL
);

-- LoadSDKSession: a session's entries in order; ListSDKSessionSubpaths.
CREATE INDEX sdk_session_entries_session ON sdk_session_entries (tenant, session_id, subpath, seq);
-- Dedup by the entry's uuid.
CREATE UNIQUE INDEX sdk_session_entries_uuid ON sdk_session_entries (tenant, session_id, subpath, uuid) WHERE uuid <> '';
-- LatestSDKSession: a conversation's last appended entry.
CREATE INDEX sdk_session_entries_conversation ON sdk_session_entries (tenant, conversation_id, seq) WHERE conversation_id <> '';
-- DeleteSDKSessions (retention): the oldest entries first.
CREATE INDEX sdk_session_entries_created_at ON sdk_session_entries (created_at);
