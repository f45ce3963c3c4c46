-- 0017_console_lists: indexes for the operator console's lists
-- (docs/console.md#performance).
--
--   * runs_status_id, runs_tenant_status_id: ListRuns filtered by status
--     (with or without a tenant) reads exactly the matching runs, newest
--     first, however rare the status. Without them a rare finished status
--     (canceled: 1 run in 500) walked the id index through tens of
--     thousands of runs to fill a page.
--   * run_approvals_pending_requested_at: the console's approvals page,
--     pending calls of every tenant, oldest first (pending rows are few:
--     they are decided or time out).
--   * managed_sessions_created_at: the console's session list across
--     tenants (an admin), newest first; a tenant's list reads
--     managed_sessions_tenant.

CREATE INDEX runs_status_id ON runs (status, id);

CREATE INDEX runs_tenant_status_id ON runs (tenant, status, id);

CREATE INDEX run_approvals_pending_requested_at ON run_approvals (requested_at)
    WHERE decision = '';

CREATE INDEX managed_sessions_created_at ON managed_sessions (created_at, id);
