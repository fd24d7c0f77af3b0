-- Budgets (pipeline/budgets, docs/alerts.md "Budgets"): an amount in USD per day, week or month in an IANA
-- time zone, for one key, org or project, with notification thresholds in percent of the amount. One logical
-- row per (scope, scope_id, period): every change is a new row with a higher version, a delete is a newer row
-- with deleted = 1, and readers take the newest version with FINAL (which also drops deleted budgets). Tiny.
CREATE TABLE IF NOT EXISTS budgets
(
    scope LowCardinality(String),
    scope_id String,
    period LowCardinality(String),
    amount_usd Decimal(38, 24),
    tz String,
    thresholds Array(UInt16),
    updated_at DateTime64(3, 'UTC'),
    deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version, deleted)
ORDER BY (scope, scope_id, period)
COMMENT 'scope key|org|project, period day|week|month (weeks start on Monday), thresholds in percent of amount_usd';

-- Budget notifications: an append-only log of what the alert runners did with each unit of work, one unit
-- being (budget, period start, kind, threshold, amount, channel). A runner CLAIMS a unit before sending it:
-- the claim row is inserted with insert_deduplication_token = unit + attempt number, so when two runners claim
-- the same attempt at once ClickHouse keeps exactly one of the two rows (checked and added under one lock),
-- and each runner reads the row back: only the one whose owner id it holds sends. Then SENT (the channel
-- accepted it) or RELEASED (it did not, so the next attempt may be claimed). A claim whose lease passed
-- without SENT or RELEASED (its runner died) may be claimed again with the next attempt number.
CREATE TABLE IF NOT EXISTS budget_notifications
(
    scope LowCardinality(String),
    scope_id String,
    period LowCardinality(String),
    period_start DateTime('UTC'),
    kind LowCardinality(String),
    threshold UInt16,
    amount_usd Decimal(38, 24),
    channel LowCardinality(String),
    attempt UInt32,
    event Enum8('claimed' = 1, 'sent' = 2, 'released' = 3),
    owner String,
    at DateTime64(3, 'UTC'),
    lease_until DateTime64(3, 'UTC'),
    spent_usd Decimal(38, 24),
    projected_usd Decimal(38, 24),
    projected_exceed_at Nullable(DateTime64(3, 'UTC'))
)
ENGINE = MergeTree
ORDER BY (period_start, scope, scope_id, period, kind, threshold, amount_usd, channel, attempt, event)
TTL toDateTime(at) + INTERVAL 400 DAY
-- The claim tokens of the last 10000 inserts are remembered (the table gets a few inserts per notification).
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'kind threshold|forecast (threshold 0), period_start = local midnight of the period start in UTC';
