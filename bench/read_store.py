"""A year of usage for 10,000 keys, built inside ClickHouse (``INSERT ... SELECT ... FROM numbers()``), for the
read benchmark (bench/read.py). No Kafka, no worker: rows go straight into ``rollups`` as a flush writes them
(kind 'usage', one row per key x model x provider x org x project x price sheet x 15-minute window).

Shape (deterministic: every random choice is a hash of the candidate row's number):

* keys ``key_00000`` .. ``key_09999``; key of rank r (= index + 1) is active in a 15-minute window with
  probability ``min(1, ACTIVITY / r ** ZIPF_S)`` times a day/night factor, so the busiest keys send traffic in
  every window and the tail a few times a month (Zipf, like bench/workload.py's traffic);
* each key uses ``MODELS_PER_KEY`` of bench/workload.py's 20 models, less and less often (``MODEL_WEIGHTS``); one
  of the 20 (``internal-finetune-v2``) has no price: its rows are unpriced (price_version '', cost 0);
* 500 orgs of 20 keys (``org_000`` .. ``org_499``: key i belongs to org i mod 500), each with 4 projects of 5 keys
  (``org_123_p0`` .. ``org_123_p3``);
* two price sheets: ``2025-11-15`` before 2026-06-01, ``2026-05-20`` after; costs are exact Decimal(38, 24)
  products of token counts and per-token rates;
* the year is [2025-12-01, 2026-12-01) UTC; freshness rows for 4 partitions of topic ``usage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from bench.workload import MODELS

YEAR_START = datetime(2025, 12, 1, tzinfo=UTC)
YEAR_END = datetime(2026, 12, 1, tzinfo=UTC)
WINDOWS = int((YEAR_END - YEAR_START).total_seconds()) // 900
KEYS = 10_000
ORGS = 500
PROJECTS_PER_ORG = 4
MODELS_PER_KEY = 4
MODEL_WEIGHTS = (1.0, 0.55, 0.3, 0.15)
ACTIVITY = 150.0
ZIPF_S = 1.1
PRICE_CHANGE = datetime(2026, 6, 1, tzinfo=UTC)
UNPRICED_MODEL = "internal-finetune-v2"
NIGHT = 0.45  # share of night windows (UTC 23..6) kept: traffic follows the working day
TOPIC, PARTITIONS = "usage", 4


@dataclass(frozen=True)
class Subjects:
    """What the benchmark reads: a typical key, the busiest key, an org, a project (their ids)."""

    typical_key: str = "key_01000"
    busiest_key: str = "key_00000"
    org: str = "org_123"
    project: str = "org_123_p1"


def _rates(column: int) -> str:
    """Per-token USD rates by model index (input or output), as a Decimal(38, 24) array literal; 0 for the
    unpriced model."""
    rates = []
    for i, (model, _) in enumerate(MODELS):
        per_million = 0 if model == UNPRICED_MODEL else (0.15 + (i * 37 % 23) * 0.35) * (1 if column == 0 else 4)
        rates.append(f"toDecimal128('{per_million / 1_000_000:.12f}', 24)")
    return "[" + ", ".join(rates) + "]"


def insert_sql(keys: int = KEYS) -> str:
    """The one INSERT ... SELECT that fills a year for ``keys`` keys in ``keys // 20`` orgs (see the module
    docstring)."""
    orgs = max(1, keys // (KEYS // ORGS))
    models = "[" + ", ".join(f"'{m}'" for m, _ in MODELS) + "]"
    providers = "[" + ", ".join(f"'{p}'" for _, p in MODELS) + "]"
    weights = "[" + ", ".join(str(w) for w in MODEL_WEIGHTS) + "]"
    start = int(YEAR_START.timestamp())
    change = int(PRICE_CHANGE.timestamp())
    return f"""
INSERT INTO rollups (kind, api_key_id, hour, quarter, model, provider, org_id, project_id, price_version,
                     requests, error_requests, unpriced_requests, input_tokens, output_tokens, cache_read_tokens,
                     cache_write_tokens, reasoning_tokens, input_cost, output_cost, total_cost)
SELECT 'usage', api_key_id, hour, quarter, model, provider, org_id, project_id, price_version,
       requests, error_requests, if(unpriced, requests, 0), input_tokens, output_tokens, cache_read_tokens,
       cache_write_tokens, reasoning_tokens, input_cost, output_cost, input_cost + output_cost
FROM
(
    SELECT
        key_index, slot, window,
        toDateTime({start} + intDiv(window, 4) * 3600, 'UTC') AS hour,
        toUInt8(window % 4) AS quarter,
        (key_index * 7 + slot * 5) % {len(MODELS)} + 1 AS model_number,
        cityHash64(key_index, slot, window) AS h,
        concat('key_', leftPad(toString(key_index), 5, '0')) AS api_key_id,
        concat('org_', leftPad(toString(key_index % {orgs}), 3, '0')) AS org_id,
        concat(org_id, '_p', toString(intDiv(key_index, {orgs}) % {PROJECTS_PER_ORG})) AS project_id,
        {models}[model_number] AS model,
        {providers}[model_number] AS provider,
        model = '{UNPRICED_MODEL}' AS unpriced,
        if(unpriced, '', if(toUnixTimestamp(hour) < {change}, '2025-11-15', '2026-05-20')) AS price_version,
        1 + h % (1 + toUInt64(40 * key_activity)) AS requests,
        toUInt64(intDiv(requests, 30) + (h % 97 = 0)) AS error_requests,
        requests * (150 + bitShiftRight(h, 8) % 2500) AS input_tokens,
        requests * (20 + bitShiftRight(h, 20) % 900) AS output_tokens,
        intDiv(input_tokens, 4) AS cache_read_tokens,
        if(provider = 'anthropic', intDiv(input_tokens, 10), 0) AS cache_write_tokens,
        intDiv(output_tokens, 5) AS reasoning_tokens,
        {_rates(0)}[model_number] * input_tokens AS input_cost,
        {_rates(1)}[model_number] * output_tokens AS output_cost
    FROM
    (
        -- Each key x model slot is active in round(windows x activity) distinct windows, spread over the year
        -- by a permutation (7919 is prime and does not divide {WINDOWS}); nights keep {NIGHT:.0%} of them.
        SELECT key_index, slot, key_activity, (j * 7919 + key_index * 104729 + slot * 13) % {WINDOWS} AS window
        FROM
        (
            SELECT intDiv(number, {MODELS_PER_KEY}) AS key_index, number % {MODELS_PER_KEY} AS slot,
                   least(1.0, {ACTIVITY} / pow(key_index + 1, {ZIPF_S})) AS key_activity,
                   toUInt32(round({WINDOWS} * key_activity * {weights}[slot + 1])) AS active_windows
            FROM numbers({keys * MODELS_PER_KEY})
        )
        ARRAY JOIN range(active_windows) AS j
        WHERE intDiv(window, 4) % 24 BETWEEN 7 AND 22 OR cityHash64(key_index, slot, window, 2) % 100 < {NIGHT * 100:.0f}
    )
)"""


def progress_sql() -> str:
    """Freshness: every partition of the usage topic counted through the year's end."""
    end = int(YEAR_END.timestamp())
    return f"""
INSERT INTO rollups (kind, kafka_topic, kafka_partition, last_offset, counted_through)
SELECT 'progress', '{TOPIC}', number, 1000000, toDateTime64({end}, 3, 'UTC') FROM numbers({PARTITIONS})"""


def build(client: Client, parts: int = 4, keys: int = KEYS) -> int:
    """Fills ``rollups`` (migrated, empty) with the year, in ``parts`` inserts of consecutive stretches of time
    (as merged flushes leave a table: parts cover time ranges, each holding every key); returns the number of
    usage rows."""
    sql = insert_sql(keys)
    for start, end in _stretches(parts):
        client.command(f"{sql}\nWHERE window >= {start} AND window < {end}", settings=INSERT_SETTINGS)
    client.command(progress_sql())
    return client.query("SELECT count() FROM rollups WHERE kind = 'usage'").result_rows[0][0]


# One part per insert; rows are unique per sorting key, so pre-merging the block on insert would only cost time.
INSERT_SETTINGS = {"max_threads": 2, "max_insert_threads": 1, "optimize_on_insert": 0,
                   "max_insert_block_size": 100_000_000, "min_insert_block_size_rows": 100_000_000,
                   "min_insert_block_size_bytes": 1 << 40}


def _stretches(parts: int) -> list[tuple[int, int]]:
    edges = [WINDOWS * i // parts for i in range(parts + 1)]
    return list(zip(edges, edges[1:]))
