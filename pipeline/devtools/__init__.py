"""Development and test tools, never imported by production code (a test enforces it):

- ``brokers``: a local Apache Kafka (deploy/kafka) and the embedded Tansu broker, for tests and the demo;
- ``gateway``: synthetic gateway traffic for the demo and the benchmark;
- ``chdb_server``: a thin ClickHouse-HTTP front over embedded chDB, so several test processes share one engine;
- ``dashboards``: generates the Grafana dashboards in deploy/grafana (tests hold their SQL to the query module).

The CLI's ``demo`` command is their one user outside tests and ``bench/``.
"""
