-- 0016_usage_run_id: usage rows by run, for a Managed Agents session's
-- usage (store.Managed.SumConversationUsage sums the usage rows of the
-- runs of the session's conversation on every GET of the session).
CREATE INDEX usage_run_id ON usage (run_id);
