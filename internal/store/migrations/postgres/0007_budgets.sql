-- 0007_budgets: spend counters of budgets (store.Budgets) and the
-- reservations held against them, shared by every instance on the store.
--
-- The PostgreSQL twin of sqlite/0007_budgets.sql:
--   * budget_counters: one row per scope (tenant, key, agent, run), subject
--     and period ('d:2026-12-01', 'm:2026-12', 'run'); spent_usd is the
--     settled spend; alerted_fraction the highest alert fraction already
--     raised (alerts fire once per counter and fraction across instances);
--     expires_at is when the row may be swept, after its period ended.
--     ReserveBudget locks a reservation's counter rows (FOR UPDATE, in key
--     order) so that concurrent reservations serialize per counter.
--   * budget_reservations: one row per reservation and counter. Only rows
--     with expires_at > now count: a process that died between reserve and
--     settle holds nothing once its reservation expired.

CREATE TABLE budget_counters (
    scope            text             NOT NULL,
    subject          text             NOT NULL,
    period           text             NOT NULL,
    limit_usd        double precision NOT NULL DEFAULT 0,
    spent_usd        double precision NOT NULL DEFAULT 0,
    alerted_fraction double precision NOT NULL DEFAULT 0,
    expires_at       timestamptz      NOT NULL,
    PRIMARY KEY (scope, subject, period)
);

CREATE INDEX budget_counters_expires_at ON budget_counters (expires_at);

CREATE TABLE budget_reservations (
    reservation_id text             NOT NULL,
    scope          text             NOT NULL,
    subject        text             NOT NULL,
    period         text             NOT NULL,
    amount_usd     double precision NOT NULL,
    expires_at     timestamptz      NOT NULL,
    PRIMARY KEY (reservation_id, scope, subject, period)
);

-- The reserved sum of a counter (every reservation).
CREATE INDEX budget_reservations_counter ON budget_reservations (scope, subject, period, expires_at);
-- The sweep.
CREATE INDEX budget_reservations_expires_at ON budget_reservations (expires_at);
