-- 0011_approvals: a person's decision on consequential tool calls
-- (store.Approvals).
--
--   * run_approvals: one row per tool call of a paused run that waits for
--     a decision; kind 'approval' (a person approves or denies agentd
--     running it) or 'custom_tool' (the client runs the tool and sends its
--     result: decision 'result', result and is_error); decision '' while
--     pending, then 'approve', 'deny', 'result' or 'timeout' (denied because nobody decided before expires_at). The
--     row is written when the run pauses (status 'requires_action') and
--     updated once, by the decision; it goes with its run.
--   * runs.interrupt_requested: set with cancel_requested by
--     RequestInterrupt; the run stops as a canceled one does, but ends
--     'interrupted' and keeps what it checkpointed. runs_finished_at (the
--     retention sweep) covers that terminal status too.
--   * run_approvals_pending_expires_at: the timeout sweep, oldest first.
--   * audit: approval requests and decisions are audited too (phase
--     'approval'; outcome requested, approve, deny or timeout; error holds
--     the reason), with who asked or decided (actor: the API key id, or
--     'agentd' for a timeout). SQLite cannot change a CHECK constraint, so
--     the table is rebuilt with its rows, indexes and triggers (DROP TABLE
--     runs no DELETE trigger).

ALTER TABLE runs ADD COLUMN interrupt_requested INTEGER NOT NULL DEFAULT 0;

DROP INDEX runs_finished_at;

CREATE INDEX runs_finished_at ON runs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'canceled', 'interrupted');

CREATE TABLE run_approvals (
    run_id       TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tool_use_id  TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    step         INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    input        TEXT,
    requested_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    kind         TEXT    NOT NULL DEFAULT 'approval' CHECK (kind IN ('approval', 'custom_tool')),
    decision     TEXT    NOT NULL DEFAULT '' CHECK (decision IN ('', 'approve', 'deny', 'timeout', 'result')),
    reason       TEXT    NOT NULL DEFAULT '',
    decided_by   TEXT    NOT NULL DEFAULT '',
    decided_at   INTEGER,
    result       TEXT,
    is_error     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, tool_use_id)
);

CREATE INDEX run_approvals_pending_expires_at ON run_approvals (expires_at)
    WHERE decision = '';

CREATE TABLE audit_new (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    created_at      INTEGER NOT NULL,
    tenant          TEXT    NOT NULL,
    agent           TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    step            INTEGER NOT NULL,
    tool_use_id     TEXT    NOT NULL,
    tool            TEXT    NOT NULL,
    phase           TEXT    NOT NULL CHECK (phase IN ('call', 'result', 'approval')),
    idempotency_key TEXT    NOT NULL,
    input           TEXT,
    outcome         TEXT    NOT NULL,
    error           TEXT    NOT NULL,
    duration_us     INTEGER NOT NULL,
    actor           TEXT    NOT NULL DEFAULT ''
);

INSERT INTO audit_new (id, created_at, tenant, agent, run_id, step, tool_use_id, tool, phase,
    idempotency_key, input, outcome, error, duration_us)
SELECT id, created_at, tenant, agent, run_id, step, tool_use_id, tool, phase,
    idempotency_key, input, outcome, error, duration_us FROM audit;

DROP TABLE audit;

ALTER TABLE audit_new RENAME TO audit;

CREATE INDEX audit_tenant_run_id ON audit (tenant, run_id, id);

CREATE INDEX audit_created_at ON audit (created_at);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN OLD.created_at > (CAST(strftime('%s', 'now') AS INTEGER) - 30 * 86400) * 1000000
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only: rows younger than 30 days are never deleted');
END;
