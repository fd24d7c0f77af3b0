"""meterline: exact per-API-key usage metering for LLM APIs (Kafka -> Faust -> ClickHouse).

Grouped by what the code does:

- ``metering/``: the write path, from Kafka messages to rollups committed in ClickHouse (driven by the Faust
  agent in ``agents/``);
- ``usage/``: the read path: usage questions, SQL, CSV, the HTTP API and the usage page;
- ``ingest/``: the HTTP collector and the gateway-format adapters (OpenAI, Anthropic, OTLP, LiteLLM, ...);
- ``alerts/``: spike detection, budget notifications, and delivery to on-call;
- ``budgets/``: budgets per key, org or project: what they are, their status and projection (read through
  ``usage``), their store and HTTP routes;
- ``commands/``: the ``meterline`` CLI, one module per area (``cli.py`` is its table of contents);
- ``devtools/``: local brokers, synthetic traffic, the chDB HTTP front, dashboard generation: for tests, the
  demo and the benchmark only.

Shared by all of them, at the top: ``config`` (every setting, read once from the environment), ``contract``
(the usage event and its rules), ``clickhouse`` (connections), ``kafka`` (topic creation), ``migrations``,
``metrics`` (Prometheus), ``clock`` (time units), ``retry`` (the one backoff loop).

Import rules, checked by tests/unit/test_import_rules.py: only the CLI imports ``agents``; ``metering`` and
``usage`` do not import each other; production code never imports ``devtools`` or tests.
"""
