-- Exact days in every time zone, a request identity as wide as the producer's, and "how fresh is this number"
-- (docs/usage-queries.md, docs/exactly-once.md).
--
-- 15-minute windows. Every UTC offset in use since 1972 is a whole number of quarter hours (Asia/Kolkata +05:30,
-- Asia/Kathmandu +05:45, Australia/Eucla +08:45, Australia/Lord_Howe's 30-minute DST shift), so a local day,
-- week or month is an exact set of UTC quarter hours. A usage row now belongs to one quarter (0..3) of its UTC
-- hour; `hour` keeps its meaning, so hourly readers (alerts, Grafana) are unchanged. The new column joins the end
-- of the sorting key (only a newly added column can) and the primary key stays as it was. Rows written before this
-- migration hold their whole hour in quarter 0: such history stays exact in whole-hour zones only.
ALTER TABLE rollups
    ADD COLUMN IF NOT EXISTS quarter UInt8 AFTER reason,
    MODIFY ORDER BY (kind, api_key_id, hour, model, provider, org_id, project_id, price_version,
                     kafka_topic, kafka_partition, outcome, reason, quarter);

-- Freshness: a progress row also records the instant up to which everything the partition held in Kafka was
-- counted (the flush's wall clock when it caught up with the log, else its last message's Kafka timestamp).
ALTER TABLE rollups ADD COLUMN IF NOT EXISTS counted_through SimpleAggregateFunction(max, DateTime64(3, 'UTC'));

CREATE OR REPLACE VIEW ingest_progress AS
SELECT kafka_topic, kafka_partition, max(last_offset) AS last_offset, max(counted_through) AS counted_through
FROM rollups
WHERE kind = 'progress'
GROUP BY kafka_topic, kafka_partition;

-- Exact usage per 15-minute window (window_start, UTC) for zone-exact days, weeks and months and 15-minute
-- buckets. Rows are deltas: always read with sum() ... GROUP BY. Filter on `hour` too: it is the primary key.
CREATE VIEW IF NOT EXISTS usage_15m AS
SELECT
    api_key_id, org_id, project_id, model, provider, hour, quarter,
    hour + toIntervalMinute(15 * quarter) AS window_start, price_version,
    requests, error_requests, unpriced_requests,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    input_cost, output_cost, total_cost, gateway_cost, gateway_cost_requests
FROM rollups
WHERE kind = 'usage';

-- Request identity is (api_key_id, request_id): two keys (tenants) may use the same request id. Rows written
-- before this migration have an empty api_key_id and keep their old, narrower identity (request_id alone in its
-- partition) until they expire, after the lateness bound plus a day.
ALTER TABLE dedup_keys ADD COLUMN IF NOT EXISTS api_key_id String AFTER kafka_partition;
