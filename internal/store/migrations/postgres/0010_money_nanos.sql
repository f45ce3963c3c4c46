-- 0010_money_nanos: money is kept exact, as integer nano-dollars (1e-9 USD,
-- internal/money), instead of double precision dollars whose sums showed
-- artifacts such as 0.0018180000000000002. Every amount column becomes a
-- bigint of nano-dollars under a name that says so; existing values are
-- rounded to the nearest nano-dollar. The new columns are added and the old
-- ones dropped, as SQLite must (the two schemas keep the same column order).
ALTER TABLE runs ADD COLUMN cost_nanos bigint NOT NULL DEFAULT 0;
UPDATE runs SET cost_nanos = round(cost_usd * 1000000000)::bigint WHERE cost_usd <> 0;
ALTER TABLE runs DROP COLUMN cost_usd;

ALTER TABLE usage ADD COLUMN cost_nanos bigint NOT NULL DEFAULT 0;
UPDATE usage SET cost_nanos = round(cost_usd * 1000000000)::bigint WHERE cost_usd <> 0;
ALTER TABLE usage DROP COLUMN cost_usd;

ALTER TABLE budget_counters ADD COLUMN limit_nanos bigint NOT NULL DEFAULT 0;
ALTER TABLE budget_counters ADD COLUMN spent_nanos bigint NOT NULL DEFAULT 0;
UPDATE budget_counters SET limit_nanos = round(limit_usd * 1000000000)::bigint,
    spent_nanos = round(spent_usd * 1000000000)::bigint;
ALTER TABLE budget_counters DROP COLUMN limit_usd;
ALTER TABLE budget_counters DROP COLUMN spent_usd;

ALTER TABLE budget_reservations ADD COLUMN amount_nanos bigint NOT NULL DEFAULT 0;
UPDATE budget_reservations SET amount_nanos = round(amount_usd * 1000000000)::bigint;
ALTER TABLE budget_reservations DROP COLUMN amount_usd;

ALTER TABLE usage_daily ADD COLUMN cost_nanos bigint NOT NULL DEFAULT 0;
UPDATE usage_daily SET cost_nanos = round(cost_usd * 1000000000)::bigint WHERE cost_usd <> 0;
ALTER TABLE usage_daily DROP COLUMN cost_usd;
