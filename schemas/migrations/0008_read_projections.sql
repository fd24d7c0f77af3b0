-- Reads at scale (docs/usage-queries.md "Where each answer is read from", docs/exactly-once.md "Coarse reads"):
-- aggregate PROJECTIONS of `rollups`, not materialized views. A projection is stored inside each data part, so the
-- flush's one insert is still one part that appears atomically with every coarser copy of its numbers; a retried
-- flush (same insert_deduplication_token) is dropped whole; a part without a projection (written before this
-- migration, until MATERIALIZE below reaches it) is simply read from its own rows. ClickHouse picks, per query and
-- per part, the smallest projection that can answer it.
--
-- Aggregates of `rollups`' projections are merged again on every background merge of the table: AggregatingMergeTree
-- sums rows with equal sorting keys, so a part's projection is rebuilt from the merged rows (sums of sums: exact).
ALTER TABLE rollups MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';

-- Every (api_key_id, org_id, project_id) with usage: the admin key list and its prefix search, "was this id ever
-- used", and the keys of an org or project. A few rows per key and part.
ALTER TABLE rollups ADD PROJECTION IF NOT EXISTS usage_keys
(
    SELECT kind, api_key_id, org_id, project_id, count()
    GROUP BY kind, api_key_id, org_id, project_id
);

-- The same as a view: one row per (api_key_id, org_id, project_id) that has usage.
CREATE VIEW IF NOT EXISTS usage_keys AS
SELECT api_key_id, org_id, project_id
FROM rollups
WHERE kind = 'usage'
GROUP BY api_key_id, org_id, project_id;

-- Org and project scopes: the 15-minute windows ordered by org and project, keys summed away.
ALTER TABLE rollups ADD PROJECTION IF NOT EXISTS usage_org_15m
(
    SELECT kind, org_id, project_id, hour, quarter, model, provider,
           sum(requests), sum(error_requests), sum(unpriced_requests), sum(input_tokens), sum(output_tokens),
           sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), sum(input_cost), sum(output_cost),
           sum(total_cost), sum(gateway_cost), sum(gateway_cost_requests), sumMap(units), sumMap(unit_costs)
    GROUP BY kind, org_id, project_id, hour, quarter, model, provider
);

-- All keys (admin): totals per 15-minute window (summary, series in any zone, peak hours) ...
ALTER TABLE rollups ADD PROJECTION IF NOT EXISTS usage_all_15m
(
    SELECT kind, hour, quarter,
           sum(requests), sum(error_requests), sum(unpriced_requests), sum(input_tokens), sum(output_tokens),
           sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), sum(input_cost), sum(output_cost),
           sum(total_cost), sum(gateway_cost), sum(gateway_cost_requests), sumMap(units), sumMap(unit_costs)
    GROUP BY kind, hour, quarter
);

-- ... and per model: whole UTC days, and the 15-minute windows at a range's edges (pipeline/usage/ranges.py
-- decompose).
ALTER TABLE rollups ADD PROJECTION IF NOT EXISTS usage_all_models_15m
(
    SELECT kind, hour, quarter, model, provider,
           sum(requests), sum(error_requests), sum(unpriced_requests), sum(input_tokens), sum(output_tokens),
           sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), sum(input_cost), sum(output_cost),
           sum(total_cost), sum(gateway_cost), sum(gateway_cost_requests), sumMap(units), sumMap(unit_costs)
    GROUP BY kind, hour, quarter, model, provider
);

ALTER TABLE rollups ADD PROJECTION IF NOT EXISTS usage_all_models_day
(
    SELECT kind, toStartOfDay(hour), model, provider,
           sum(requests), sum(error_requests), sum(unpriced_requests), sum(input_tokens), sum(output_tokens),
           sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), sum(input_cost), sum(output_cost),
           sum(total_cost), sum(gateway_cost), sum(gateway_cost_requests), sumMap(units), sumMap(unit_costs)
    GROUP BY kind, toStartOfDay(hour), model, provider
);

-- Existing parts get their projections in the background (mutations: they survive a restart and resume). Until a
-- part has them, queries read that part's own rows: every answer is exact meanwhile, only slower. Running these
-- again (an interrupted migration is re-run) rebuilds the same projections from the same rows.
ALTER TABLE rollups MATERIALIZE PROJECTION usage_keys;
ALTER TABLE rollups MATERIALIZE PROJECTION usage_org_15m;
ALTER TABLE rollups MATERIALIZE PROJECTION usage_all_15m;
ALTER TABLE rollups MATERIALIZE PROJECTION usage_all_models_15m;
ALTER TABLE rollups MATERIALIZE PROJECTION usage_all_models_day;
