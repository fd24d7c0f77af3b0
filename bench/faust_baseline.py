"""Baseline B: an empty Faust agent that only iterates the topic. Prints JSON timing and exits.

python -m bench.faust_baseline BOOTSTRAP TOPIC EXPECTED_MESSAGES
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import faust


def main() -> None:
    bootstrap, topic_name, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = faust.App(f"bench-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, autodiscover=False, consumer_auto_offset_reset="earliest",
                    datadir=f"/tmp/bench-faust-{os.getpid()}")
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def drain(stream):
        count, started = 0, None
        async for _event in stream.events():
            if started is None:
                started = time.perf_counter()
            count += 1
            if count == expected:
                elapsed = time.perf_counter() - started
                print(json.dumps({"messages": count, "seconds": elapsed}), flush=True)
                os._exit(0)

    faust.Worker(app, loglevel="WARNING", redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
