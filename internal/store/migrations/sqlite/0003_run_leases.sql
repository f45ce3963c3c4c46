-- 0003_run_leases: leases that let workers own runs (store.RunLeases).
--
--   * lease_owner: the worker executing the run; NULL when nobody holds it
--     (queued, released, reclaimed after its worker died, or terminal);
--   * lease_expires_at: when the lease ends unless extended (INTEGER unix
--     microseconds, like every timestamp); NULL together with lease_owner;
--   * cancel_requested: 0/1, set by RequestCancel; the worker sees it at its
--     next lease extension.

ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_expires_at INTEGER;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

-- ReclaimExpiredRuns (and QueueStats' running count): running runs by
-- lease expiry.
CREATE INDEX runs_running_lease_expires_at ON runs (lease_expires_at)
    WHERE status = 'running';

-- QueueStats: queued runs per agent and their age.
CREATE INDEX runs_queued_agent_created_at ON runs (agent, created_at)
    WHERE status = 'queued';
