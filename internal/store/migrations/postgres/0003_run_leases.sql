-- 0003_run_leases: leases that let workers own runs (store.RunLeases).
--
-- The PostgreSQL twin of sqlite/0003_run_leases.sql:
--   * lease_owner: the worker executing the run; NULL when nobody holds it
--     (queued, released, reclaimed after its worker died, or terminal);
--   * lease_expires_at: when the lease ends unless extended; NULL together
--     with lease_owner;
--   * cancel_requested: set by RequestCancel (SQLite: INTEGER 0/1); the
--     worker sees it at its next lease extension.
-- Adding columns with a constant default does not rewrite the table.

ALTER TABLE runs ADD COLUMN lease_owner text;
ALTER TABLE runs ADD COLUMN lease_expires_at timestamptz;
ALTER TABLE runs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

-- ReclaimExpiredRuns (and QueueStats' running count): running runs by
-- lease expiry.
CREATE INDEX runs_running_lease_expires_at ON runs (lease_expires_at)
    WHERE status = 'running';

-- QueueStats: queued runs per agent and their age.
CREATE INDEX runs_queued_agent_created_at ON runs (agent, created_at)
    WHERE status = 'queued';
