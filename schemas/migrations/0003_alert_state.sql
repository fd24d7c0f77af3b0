-- Usage-spike alerts (pipeline/alerts, docs/alerts.md): one logical row per (api_key_id, model, metric)
-- holding the alert's lifecycle and what each delivery channel has been told, so a restarted runner neither
-- pages twice nor forgets a pending resolution. The runner rewrites a row whenever it changes, with
-- version = max(previous + 1, now in ms); readers take the newest version (FINAL). Tiny: one row per alert
-- key that ever fired.
CREATE TABLE IF NOT EXISTS alert_state
(
    api_key_id String,
    model String,
    metric LowCardinality(String),
    status Enum8('firing' = 1, 'resolved' = 2),
    severity LowCardinality(String),
    rule LowCardinality(String),
    reason String,
    opened_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC'),
    value Float64,
    threshold Float64,
    baseline Float64,
    peak Float64,
    below_runs UInt16,
    delivered Map(String, String),
    delivered_at Map(String, DateTime64(3, 'UTC')),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (api_key_id, model, metric)
COMMENT 'model * = the key total over all models; metric tokens|requests|cost; delivered: channel -> last phase told (firing|resolved)';
