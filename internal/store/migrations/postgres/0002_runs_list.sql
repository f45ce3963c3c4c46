-- 0002_runs_list: indexes for ListRuns and ExpireIdempotencyKeys.

-- ListRuns: a tenant's runs, newest (highest id) first, paged by id.
CREATE INDEX runs_tenant_id ON runs (tenant, id);

-- ExpireIdempotencyKeys: runs that still hold a key, by age.
CREATE INDEX runs_idempotency_created_at ON runs (created_at)
    WHERE idempotency_key <> '';
