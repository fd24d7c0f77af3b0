-- Every usage unit genai-prices prices (pipeline/units.py), kept per rollup row without a column per unit:
--   units       counts of the units events reported in their `usage` object (audio/image/video tokens, 1 h
--               cache writes, web searches, seconds, pages, ...), by genai-prices unit name;
--   unit_costs  the cost of every priced unit (the five token columns' units and `requests` included), by unit
--               name; the values of a row sum to its total_cost exactly.
-- Map columns summed key by key (sumMap) keep the write path one insert and the engine an AggregatingMergeTree:
-- a row without extra units stores an empty map (a few bytes), and queries that do not read a map never touch
-- it. Decimal(38, 24) like every other money column. Map keys are String: sumMap rejects LowCardinality keys.
-- As for the cost columns (0006), the writer sends the per-unit costs as integer units of 1e-24 USD in an
-- EPHEMERAL map, and ClickHouse derives the Decimal values from them exactly (reinterpret); an insert that names
-- unit_costs itself still works.
ALTER TABLE rollups
    ADD COLUMN IF NOT EXISTS units SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    ADD COLUMN IF NOT EXISTS unit_cost_units Map(String, Int128) EPHEMERAL,
    ADD COLUMN IF NOT EXISTS unit_costs SimpleAggregateFunction(sumMap, Map(String, Decimal(38, 24)))
        DEFAULT mapApply((unit, cost) -> (unit, reinterpret(cost, 'Decimal(38, 24)')), unit_cost_units);

-- The views gain the two columns (as defined in 0001 and 0005, plus units and unit_costs).
CREATE OR REPLACE VIEW usage_hourly AS
SELECT
    api_key_id, org_id, project_id, model, provider, hour, price_version,
    requests, error_requests, unpriced_requests,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    input_cost, output_cost, total_cost, gateway_cost, gateway_cost_requests,
    units, unit_costs
FROM rollups
WHERE kind = 'usage';

CREATE OR REPLACE VIEW usage_15m AS
SELECT
    api_key_id, org_id, project_id, model, provider, hour, quarter,
    hour + toIntervalMinute(15 * quarter) AS window_start, price_version,
    requests, error_requests, unpriced_requests,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    input_cost, output_cost, total_cost, gateway_cost, gateway_cost_requests,
    units, unit_costs
FROM rollups
WHERE kind = 'usage';
