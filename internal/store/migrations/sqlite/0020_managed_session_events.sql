-- 0019_managed_session_events: events of a Managed Agents session that no
-- run produces (session.updated), kept so that the session's history and
-- stream show them, in order with its turns (internal/managed).
--
--   * seq: 1, 2, 3, ... per session, in the order they happened.
--   * data: package managed's JSON, byte for byte: the event as the API
--     shows it, and what translating the session's later turns needs of it
--     (the tools and budget the update set).
--   * created_at: INTEGER unix microseconds, UTC: where the event falls
--     among the session's turns (runs.created_at).
--   * deleted with the session (DeleteManagedSession); no foreign key, as
--     managed_sessions has none.

CREATE TABLE managed_session_events (
    session_id TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
);
