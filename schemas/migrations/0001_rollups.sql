-- The one table every flush writes to, in ONE insert per Kafka partition: usage deltas, the partition's
-- progress (last offset) and the outcome counts of the same batch. One insert into one table partition is
-- one part, committed atomically, so usage and progress can never disagree (see docs/exactly-once.md).
-- Readers never touch this table directly: they use the views below.
CREATE TABLE IF NOT EXISTS rollups
(
    kind Enum8('usage' = 1, 'progress' = 2, 'outcome' = 3),
    api_key_id String,
    hour DateTime('UTC'),
    model LowCardinality(String),
    provider LowCardinality(String),
    org_id LowCardinality(String),
    project_id LowCardinality(String),
    price_version LowCardinality(String),
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    outcome LowCardinality(String),
    reason LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    error_requests SimpleAggregateFunction(sum, UInt64),
    unpriced_requests SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    input_cost SimpleAggregateFunction(sum, Decimal(38, 24)),
    output_cost SimpleAggregateFunction(sum, Decimal(38, 24)),
    total_cost SimpleAggregateFunction(sum, Decimal(38, 24)),
    gateway_cost SimpleAggregateFunction(sum, Decimal(38, 24)),
    gateway_cost_requests SimpleAggregateFunction(sum, UInt64),
    events SimpleAggregateFunction(sum, UInt64),
    last_offset SimpleAggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree
-- No PARTITION BY: a flush may carry late events for any hour, and it must stay one part.
ORDER BY (kind, api_key_id, hour, model, provider, org_id, project_id, price_version,
          kafka_topic, kafka_partition, outcome, reason)
-- Remembers recent insert tokens so a retried flush (same token) is dropped, not added twice.
SETTINGS non_replicated_deduplication_window = 10000;

-- Exact hourly usage per key x model x provider (x org, project, price version). Rows are deltas:
-- always read with sum() ... GROUP BY.
CREATE VIEW IF NOT EXISTS usage_hourly AS
SELECT
    api_key_id, org_id, project_id, model, provider, hour, price_version,
    requests, error_requests, unpriced_requests,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    input_cost, output_cost, total_cost, gateway_cost, gateway_cost_requests
FROM rollups
WHERE kind = 'usage';

-- The last Kafka offset whose effect is in usage_hourly, per topic partition.
CREATE VIEW IF NOT EXISTS ingest_progress AS
SELECT kafka_topic, kafka_partition, max(last_offset) AS last_offset
FROM rollups
WHERE kind = 'progress'
GROUP BY kafka_topic, kafka_partition;

-- What became of every consumed event: counted, duplicate or rejected (with its reason).
CREATE VIEW IF NOT EXISTS ingest_outcomes AS
SELECT kafka_topic, kafka_partition, outcome, reason, sum(events) AS events
FROM rollups
WHERE kind = 'outcome'
GROUP BY kafka_topic, kafka_partition, outcome, reason;
