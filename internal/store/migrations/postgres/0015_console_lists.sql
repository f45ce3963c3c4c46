-- 0017_console_lists: indexes for the operator console's lists
-- (docs/console.md#performance).
--
--   * runs_status_id, runs_tenant_status_id: ListRuns filtered by status
--     (with or without a tenant) reads exactly the matching runs, newest
--     first, however rare the status. Without them a rare finished status
--     (canceled: 1 run in 500) walked the id index through tens of
--     thousands of runs to fill a page.
--     The console's approvals page reads the paused runs through
--     runs_status_id too (status 'requires_action'), then their calls.
--   * managed_sessions_created_at: the console's session list across
--     tenants (an admin), newest first; a tenant's list reads
--     managed_sessions_tenant.

CREATE INDEX runs_status_id ON runs (status, id);

CREATE INDEX runs_tenant_status_id ON runs (tenant, status, id);

CREATE INDEX managed_sessions_created_at ON managed_sessions (created_at, id);
