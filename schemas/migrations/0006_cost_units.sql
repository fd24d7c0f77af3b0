-- Costs written as integer units of 1e-24 USD (docs/exactly-once.md): the writer sends each row's input and
-- output cost as two Int128 numbers and ClickHouse derives the Decimal(38, 24) columns from them, exactly
-- (reinterpret: a Decimal(38, 24) IS an Int128 count of 1e-24 units). This spares the worker formatting three
-- 24-decimal strings per row (bench/RESULTS.md). The units columns are EPHEMERAL: never stored; an insert that
-- names the Decimal columns themselves still works as before.
ALTER TABLE rollups
    ADD COLUMN IF NOT EXISTS input_cost_units Int128 EPHEMERAL,
    ADD COLUMN IF NOT EXISTS output_cost_units Int128 EPHEMERAL;

ALTER TABLE rollups
    MODIFY COLUMN input_cost SimpleAggregateFunction(sum, Decimal(38, 24))
        DEFAULT reinterpret(input_cost_units, 'Decimal(38, 24)'),
    MODIFY COLUMN output_cost SimpleAggregateFunction(sum, Decimal(38, 24))
        DEFAULT reinterpret(output_cost_units, 'Decimal(38, 24)'),
    MODIFY COLUMN total_cost SimpleAggregateFunction(sum, Decimal(38, 24))
        DEFAULT reinterpret(input_cost_units + output_cost_units, 'Decimal(38, 24)');
