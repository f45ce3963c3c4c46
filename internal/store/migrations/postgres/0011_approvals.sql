-- 0011_approvals: a person's decision on consequential tool calls
-- (store.Approvals). The PostgreSQL twin of sqlite/0011_approvals.sql.
--
--   * run_approvals: one row per tool call of a paused run that waits for
--     a decision; decision '' while pending, then 'approve', 'deny' or
--     'timeout'. Written when the run pauses (status 'requires_action'),
--     updated once by the decision; it goes with its run.
--   * audit: approval requests and decisions are audited (phase
--     'approval') with who asked or decided (actor).

CREATE TABLE run_approvals (
    run_id       text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tool_use_id  text        NOT NULL,
    tenant       text        NOT NULL,
    step         integer     NOT NULL,
    name         text        NOT NULL,
    input        json,
    requested_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    decision     text        NOT NULL DEFAULT '' CHECK (decision IN ('', 'approve', 'deny', 'timeout')),
    reason       text        NOT NULL DEFAULT '',
    decided_by   text        NOT NULL DEFAULT '',
    decided_at   timestamptz,
    PRIMARY KEY (run_id, tool_use_id)
);

CREATE INDEX run_approvals_pending_expires_at ON run_approvals (expires_at)
    WHERE decision = '';

ALTER TABLE audit DROP CONSTRAINT audit_phase_check;
ALTER TABLE audit ADD CONSTRAINT audit_phase_check CHECK (phase IN ('call', 'result', 'approval'));
ALTER TABLE audit ADD COLUMN actor text NOT NULL DEFAULT '';
