"""Usage-spike alerts: detect per key and per key x model spikes of tokens, requests and cost over the hourly
rollups in ClickHouse, and page on-call once per spike (Alertmanager, webhook, Slack, PagerDuty).

Modules: ``model`` (shared types), ``baseline`` (the detection SQL), ``rules`` (static rules file), ``detect``
(the decision per series), ``lifecycle`` (open / keep / resolve), ``state`` (alert_state in ClickHouse),
``notice`` + ``payloads`` (what each channel receives), ``channels`` (HTTP delivery with retries),
``metrics`` (Prometheus), ``runner`` (one run, and the loop). See docs/alerts.md.
"""
