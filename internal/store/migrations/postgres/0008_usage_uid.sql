-- 0008_usage_uid: a unique id per usage row, so that writing a batch again
-- (a retry after an error the client saw although the batch committed)
-- does not write its rows twice.
--
-- The PostgreSQL twin of sqlite/0008_usage_uid.sql:
--   * uid: assigned once when the row is buffered (internal/usagelog);
--     NULL for rows written without one (rows from before this migration,
--     direct AppendUsage calls), and NULLs never conflict.
--   * AppendUsage and AppendUsageBatch insert with ON CONFLICT (uid) DO
--     NOTHING: a row whose uid is already stored is skipped.

ALTER TABLE usage ADD COLUMN uid text;

CREATE UNIQUE INDEX usage_uid ON usage (uid);
