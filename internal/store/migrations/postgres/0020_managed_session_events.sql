-- 0019_managed_session_events: the PostgreSQL twin of
-- sqlite/0019_managed_session_events.sql: events of a Managed Agents
-- session that no run produces (session.updated), seq 1, 2, 3, ... per
-- session, data package managed's JSON (the event and what later turns need
-- of it), deleted with the session.

CREATE TABLE managed_session_events (
    session_id text        NOT NULL,
    id         text        NOT NULL,
    seq        bigint      NOT NULL,
    type       text        NOT NULL,
    data       json        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, seq)
);
