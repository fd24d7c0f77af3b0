"""The read path: what a key owner, an operator or Grafana asks of the rollups.

- ``ranges``: a usage question (scope, [from, to) in an IANA zone, buckets), parsed and validated (pure);
- ``parameters``: query parameters declared once (JSON Schema), from which the API's OpenAPI document and
  its request checks are both derived; ``time_zones.txt``: the zones the API accepts;
- ``query``: the SQL that answers it from ``usage_hourly`` (summary, per model, series, peak hours);
- ``export``: the CSV ledger, streamed block by block;
- ``tokens``: key-scoped read tokens;
- ``api``: the HTTP API (``/api/v1``) and the usage page (``/usage``, static files in ``web/``).

Nothing here imports the write path (:mod:`pipeline.metering`) or development tools. See
docs/usage-queries.md and docs/usage-page.md.
"""
