-- Request ids already counted, per Kafka partition (a gateway retry carries the same key, so it lands on
-- the same partition). Written before the flush that counts them; only rows with
-- batch_end_offset <= the partition's progress are trusted, so rows of a flush that never committed are
-- ignored. Plain MergeTree on purpose: a replacing engine could keep an uncommitted copy of an id and drop
-- the committed one. Rows expire after the lateness bound (expires_at is computed by the writer).
CREATE TABLE IF NOT EXISTS dedup_keys
(
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    request_id String,
    hour DateTime('UTC'),
    batch_end_offset Int64,
    expires_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY (kafka_topic, kafka_partition, request_id)
TTL expires_at;
