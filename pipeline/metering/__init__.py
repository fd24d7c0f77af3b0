"""The write path: from consumed Kafka messages to exact rollups committed in ClickHouse.

Modules, in the order a flush uses them:

- ``rollup``: decode, bound, deduplicate within the flush, price and group one partition's messages (pure);
- ``dedup``: the in-memory filter of request ids already counted (hashes, confirmed in ClickHouse);
- ``pricing``: exact linear rates derived from genai-prices, and TOML overrides;
- ``deadletters``: what a rejected message becomes on the dead-letter topic, and its producer;
- ``sink``: encoding and writing one flush (request ids, then ONE atomic insert) with the progress fence;
- ``meter``: one partition's flush end to end, with retries (knows nothing of Faust);
- ``failpoints``: test-only crash injection at the moments that matter for exactly-once.

Nothing here imports the read path (:mod:`pipeline.usage`) or development tools (:mod:`pipeline.devtools`);
the Faust agent that drives it lives in ``agents/``. The argument for exactness: docs/exactly-once.md.
"""
