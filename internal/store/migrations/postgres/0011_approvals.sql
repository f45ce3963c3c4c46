-- 0011_approvals: a person's decision on consequential tool calls
-- (store.Approvals). The PostgreSQL twin of sqlite/0011_approvals.sql.
--
--   * run_approvals: one row per tool call of a paused run that waits for
--     a decision; kind 'approval' (a person approves or denies agentd
--     running it) or 'custom_tool' (the client runs the tool and sends its
--     result: decision 'result', result and is_error); decision '' while
--     pending, then 'approve', 'deny', 'result' or 'timeout'. Written when the run pauses (status 'requires_action'),
--     updated once by the decision; it goes with its run.
--   * runs.interrupt_requested: set with cancel_requested by
--     RequestInterrupt; the run ends 'interrupted', keeping what it
--     checkpointed; runs_finished_at covers that status too.
--   * audit: approval requests and decisions are audited (phase
--     'approval') with who asked or decided (actor).

ALTER TABLE runs ADD COLUMN interrupt_requested boolean NOT NULL DEFAULT false;

DROP INDEX runs_finished_at;

CREATE INDEX runs_finished_at ON runs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'canceled', 'interrupted');

CREATE TABLE run_approvals (
    run_id       text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tool_use_id  text        NOT NULL,
    tenant       text        NOT NULL,
    step         integer     NOT NULL,
    name         text        NOT NULL,
    input        json,
    requested_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    kind         text        NOT NULL DEFAULT 'approval' CHECK (kind IN ('approval', 'custom_tool')),
    decision     text        NOT NULL DEFAULT '' CHECK (decision IN ('', 'approve', 'deny', 'timeout', 'result')),
    reason       text        NOT NULL DEFAULT '',
    decided_by   text        NOT NULL DEFAULT '',
    decided_at   timestamptz,
    result       json,
    is_error     boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, tool_use_id)
);

CREATE INDEX run_approvals_pending_expires_at ON run_approvals (expires_at)
    WHERE decision = '';

ALTER TABLE audit DROP CONSTRAINT audit_phase_check;
ALTER TABLE audit ADD CONSTRAINT audit_phase_check CHECK (phase IN ('call', 'result', 'approval'));
ALTER TABLE audit ADD COLUMN actor text NOT NULL DEFAULT '';
