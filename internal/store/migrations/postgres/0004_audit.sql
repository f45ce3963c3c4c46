-- 0004_audit: the append-only audit log of consequential tool calls
-- (store.Audit).
--
-- The PostgreSQL twin of sqlite/0004_audit.sql:
--   * id: increasing, the order rows were written in;
--   * input: the redacted tool input, json (not jsonb: kept byte for byte);
--     NULL means none;
--   * duration_us: the call's duration in microseconds ('result' rows).
-- No foreign key to runs: the log outlives the runs it describes.
-- A trigger refuses UPDATE and DELETE: rows are never changed.

CREATE TABLE audit (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at      timestamptz NOT NULL,
    tenant          text        NOT NULL,
    agent           text        NOT NULL,
    run_id          text        NOT NULL,
    step            integer     NOT NULL,
    tool_use_id     text        NOT NULL,
    tool            text        NOT NULL,
    phase           text        NOT NULL CHECK (phase IN ('call', 'result')),
    idempotency_key text        NOT NULL,
    input           json,
    outcome         text        NOT NULL,
    error           text        NOT NULL,
    duration_us     bigint      NOT NULL
);

-- ListAudit: a run's rows in order.
CREATE INDEX audit_tenant_run_id ON audit (tenant, run_id, id);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only';
END;
$$;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
