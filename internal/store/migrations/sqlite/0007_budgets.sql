-- 0007_budgets: spend counters of budgets (store.Budgets) and the
-- reservations held against them, shared by every instance on the store.
--
--   * budget_counters: one row per scope (tenant, key, agent, run), subject
--     and period ('d:2026-12-01', 'm:2026-12', 'run'); spent_usd is the
--     settled spend; alerted_fraction the highest alert fraction already
--     raised (alerts fire once per counter and fraction across instances);
--     expires_at (unix microseconds) is when the row may be swept, after its
--     period ended.
--   * budget_reservations: one row per reservation and counter. Only rows
--     with expires_at > now count: a process that died between reserve and
--     settle holds nothing once its reservation expired.

CREATE TABLE budget_counters (
    scope            TEXT    NOT NULL,
    subject          TEXT    NOT NULL,
    period           TEXT    NOT NULL,
    limit_usd        REAL    NOT NULL DEFAULT 0,
    spent_usd        REAL    NOT NULL DEFAULT 0,
    alerted_fraction REAL    NOT NULL DEFAULT 0,
    expires_at       INTEGER NOT NULL,
    PRIMARY KEY (scope, subject, period)
);

CREATE INDEX budget_counters_expires_at ON budget_counters (expires_at);

CREATE TABLE budget_reservations (
    reservation_id TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    period         TEXT    NOT NULL,
    amount_usd     REAL    NOT NULL,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (reservation_id, scope, subject, period)
);

-- The reserved sum of a counter (every reservation).
CREATE INDEX budget_reservations_counter ON budget_reservations (scope, subject, period, expires_at);
-- The sweep.
CREATE INDEX budget_reservations_expires_at ON budget_reservations (expires_at);
