-- 0004_audit: the append-only audit log of consequential tool calls
-- (store.Audit). Each call has a 'call' row written before it runs and a
-- 'result' row written after.
--
--   * id: increasing, the order rows were written in;
--   * created_at: INTEGER unix microseconds, UTC, like every timestamp;
--   * input: the redacted tool input, JSON as TEXT; NULL means none;
--   * duration_us: the call's duration in microseconds ('result' rows).
-- No foreign key to runs: the log outlives the runs it describes.
-- Triggers refuse UPDATE and DELETE: rows are never changed.

CREATE TABLE audit (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    created_at      INTEGER NOT NULL,
    tenant          TEXT    NOT NULL,
    agent           TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    step            INTEGER NOT NULL,
    tool_use_id     TEXT    NOT NULL,
    tool            TEXT    NOT NULL,
    phase           TEXT    NOT NULL CHECK (phase IN ('call', 'result')),
    idempotency_key TEXT    NOT NULL,
    input           TEXT,
    outcome         TEXT    NOT NULL,
    error           TEXT    NOT NULL,
    duration_us     INTEGER NOT NULL
);

-- ListAudit: a run's rows in order.
CREATE INDEX audit_tenant_run_id ON audit (tenant, run_id, id);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
