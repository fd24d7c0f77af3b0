"""Baseline Q: quix-streams reading the same topic, in its own process and virtualenv. Prints JSON timing, exits.

    QUIX_PYTHON -m bench.quix_baseline BOOTSTRAP TOPIC EXPECTED_EVENTS window|dict

It imports nothing of meterline (quix-streams and meterline pin different libraries), so it runs in a venv of
its own: ``python3 -m venv .venv-quix && .venv-quix/bin/pip install quixstreams==3.28.1`` (bench/RESULTS.md).

- ``window``: a per-key hourly tumbling window by event time (``tumbling_window(1 h).reduce``) summing, per
  model, requests, input and output tokens: what meterline's rollups hold, without validation, dedup, prices or
  a durable store. A message is one event or a JSON array of one key's events (its first event's time is the
  message's event time).
- ``dict``: the same sums in a plain dict per key x model x hour (no windowing, no state store).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict

from quixstreams import Application

HOUR_MS = 3_600_000


def events_of(value) -> list:
    return value if isinstance(value, list) else [value]


def main() -> None:
    bootstrap, topic_name, expected, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = Application(broker_address=bootstrap, consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="quix-state-"),
                      use_changelog_topics=False, loglevel="WARNING", commit_interval=5.0)
    topic = app.topic(topic_name, key_deserializer="bytes", value_deserializer="json",
                      timestamp_extractor=lambda value, headers, ts, kind: events_of(value)[0]["timestamp"])
    sdf = app.dataframe(topic)
    seen = {"events": 0, "started": None}

    def count(value) -> None:
        if seen["started"] is None:
            seen["started"] = time.perf_counter()
        seen["events"] += len(events_of(value))
        if seen["events"] >= expected:
            elapsed = time.perf_counter() - seen["started"]
            print(json.dumps({"events": seen["events"], "seconds": elapsed, "mode": mode}), flush=True)
            os._exit(0)

    if mode == "window":
        def initial(value) -> dict:
            return add({}, value)

        def add(totals: dict, value) -> dict:
            for event in events_of(value):
                row = totals.setdefault(event.get("model", ""), [0, 0, 0])
                row[0] += 1
                row[1] += event.get("input_tokens", 0)
                row[2] += event.get("output_tokens", 0)
            return totals

        sdf.update(count)
        sdf = sdf.tumbling_window(HOUR_MS).reduce(reducer=add, initializer=initial).current()
    else:
        totals: dict = defaultdict(lambda: [0, 0, 0])

        def aggregate(value) -> None:
            for event in events_of(value):
                row = totals[(event.get("api_key_id"), event.get("model"), event.get("timestamp", 0) // HOUR_MS)]
                row[0] += 1
                row[1] += event.get("input_tokens", 0)
                row[2] += event.get("output_tokens", 0)
            count(value)

        sdf.update(aggregate)
    app.run()


if __name__ == "__main__":
    main()
