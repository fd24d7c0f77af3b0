"""Schema-driven fuzzing of the usage API against its own OpenAPI document (schemathesis), on a real running
server: the aiohttp app with UsageQueries on real chDB holding the seeded usage of test_query.

Schemathesis generates requests from /api/v1/openapi.json as served, schema-valid (positive) and schema-invalid
(negative) ones, and runs its own checks on every answer: no 5xx, every status and body as documented (so every
4xx is the JSON error shape), schema-invalid requests refused, auth not ignored, undeclared methods refused.
Its positive_data_acceptance check ("every schema-valid request gets a 2xx") is replaced by a stricter one
that knows the rules the document states in words (from < to, range length, bucket count, supported instants):
a schema-valid request may only be refused with a 400 naming one of those rules, and only when an
independent reading of the rule here agrees it is broken.

The default run is bounded (FUZZ_EXAMPLES per operation, about a minute); a longer one, with schemathesis'
coverage phase (boundary values, every enum member) too:
    METERLINE_FUZZ_EXAMPLES=2000 METERLINE_FUZZ_COVERAGE=1 .venv/bin/python -m pytest tests/integration/test_api_fuzz.py -s
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import schemathesis
from aiohttp import web
from hypothesis import settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from pipeline.usage.api import create_api_app, openapi_document
from pipeline.clickhouse import ClickHouse, connect
from pipeline.config import ApiSettings
from pipeline.usage.query import UsageQueries
from test_query import store  # noqa: F401  (the seeded module fixture)

pytestmark = pytest.mark.clickhouse

ADMIN = "admin-token-for-fuzzing"
# A range limit a random pair of dates in 1970..2105 breaks about half of the time, so both sides of the
# rule are exercised (the default, 400 days, would refuse nearly every generated range).
MAX_RANGE_DAYS = 25_000
FUZZ_EXAMPLES = int(os.environ.get("METERLINE_FUZZ_EXAMPLES", "300"))
# Schemathesis' coverage phase derives boundary cases from the document: every enum value (585 zones) on every
# range route, about 700 requests per route; the long run turns it on (every zone also runs through the real
# queries in test_time_zones).
FUZZ_COVERAGE = os.environ.get("METERLINE_FUZZ_COVERAGE", "") == "1"
SEEN: Counter = Counter()


@pytest.fixture(scope="module")
def api_url(store) -> Iterator[str]:  # noqa: F811
    """The API on a real local port, served by its own event loop in a thread (schemathesis calls it over
    HTTP, synchronously, from the test)."""
    reader = ClickHouse(connect(store.url))
    settings_ = ApiSettings(admin_token=ADMIN, token_secret="fuzz-secret", max_range_days=MAX_RANGE_DAYS)
    runner = web.AppRunner(create_api_app(UsageQueries(reader.client), reader.run, settings_), access_log=None)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="api-under-fuzz", daemon=True)
    thread.start()
    assert started.wait(60), "the API did not start"
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(60)
    reader.close()
    print(f"\nschemathesis: {sum(SEEN.values())} requests: " + ", ".join(f"{k}: {v}" for k, v in sorted(SEEN.items())))


# The document the server serves (checked below), loaded at collection time: schemathesis' fixture-based
# loader does not run under pytest 9.
schema = schemathesis.openapi.from_dict(openapi_document(MAX_RANGE_DAYS))
# The admin token is sent with every request (below), so the Authorization header is not generated data: a
# negative case that "drops" it would otherwise be sent with it and be (rightly) answered 200. Missing and bad
# tokens are schemathesis' ignored_auth check and test_api.py's.
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
                                with_security_parameters=False)
schema.config.phases.coverage.enabled = FUZZ_COVERAGE


def test_the_fuzzed_document_is_the_one_served(api_url):
    with urllib.request.urlopen(f"{api_url}/api/v1/openapi.json", timeout=30) as response:
        assert json.load(response) == schema.raw_schema


@schemathesis.check
def refused_only_for_a_documented_rule(ctx, response, case) -> bool | None:
    """A schema-valid request is answered 2xx, or 400 naming a rule across parameters that it really breaks."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code < 300:
        return True
    body = response.json()
    assert response.status_code == 400 and body.get("error") in RULES, (
        f"schema-valid request refused: {response.status_code} {body}")
    assert RULES[body["error"]](dict(case.query or {})), (
        f"schema-valid request refused for {body['error']!r}, which it does not break: {body}")
    return True


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)
def test_the_api_keeps_the_promises_of_its_openapi_document(case, api_url):
    response = case.call_and_validate(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN}"},
                                      excluded_checks=[positive_data_acceptance],
                                      additional_checks=[refused_only_for_a_documented_rule])
    mode = case.meta.generation.mode.value if case.meta else "explicit"
    SEEN[f"{mode} {response.status_code}"] += 1


# ---- the rules across parameters, as the document states them, read independently of pipeline/usage/ranges.py

EPOCH, END = 0, 4_291_747_200 * 10**9  # 1970-01-01 .. 2106-01-01 UTC, in ns
WINDOW_NS = 900 * 10**9  # usage is stored per 15-minute window of UTC
HOUR_NS = 3600 * 10**9
EARLIEST = {"day": date(1970, 1, 1), "week": date(1970, 1, 5), "month": date(1970, 1, 1)}


_FORMAT = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2}))?")


def _ns(text: str, zone: ZoneInfo) -> int:
    """Epoch nanoseconds of a documented from/to value (a date is midnight in ``zone``)."""
    day, clock, fraction, offset = _FORMAT.fullmatch(text).groups()
    if clock is None:
        return int(datetime.combine(date.fromisoformat(day), datetime.min.time(), zone).timestamp()) * 10**9
    aware = datetime.fromisoformat(f"{day}T{clock}{'+00:00' if offset in ('Z', 'z') else offset}")
    return int(aware.timestamp()) * 10**9 + int((fraction or "").ljust(9, "0"))


def _facts(query: dict) -> dict:
    zone = ZoneInfo(query.get("tz", "UTC"))
    start, end = _ns(query["from"], zone), _ns(query["to"], zone)
    # the windows starting in [start, end): from the first window start at or after each bound
    first_window, end_window = -(-start // WINDOW_NS) * WINDOW_NS, -(-end // WINDOW_NS) * WINDOW_NS
    local = lambda ns: datetime.fromtimestamp(ns // 10**9, UTC).astimezone(zone).replace(tzinfo=None)  # noqa: E731
    span = local(end) - local(start)
    granularity = query.get("granularity", "auto")
    if granularity == "auto":
        granularity = ("quarter_hour" if span <= timedelta(hours=6) else "hour" if span <= timedelta(days=2)
                       else "day" if span <= timedelta(days=92) else "week" if span <= timedelta(days=366)
                       else "month")
    return {"start": start, "end": end, "first_window": first_window, "end_window": end_window, "span": span,
            "granularity": granularity, "local": local}


def _out_of_range(query: dict) -> bool:
    f = _facts(query)
    if not (EPOCH <= f["start"] <= END and EPOCH <= f["end"] <= END):
        return True
    if f["start"] >= f["end"] or f["first_window"] >= f["end_window"]:
        return False
    return f["granularity"] in EARLIEST and _first_day(f) < EARLIEST[f["granularity"]]


def _first_day(f: dict) -> date:
    day = f["local"](f["first_window"]).date()
    return {"week": day - timedelta(days=day.weekday()), "month": day.replace(day=1)}.get(f["granularity"], day)


def _local_hours(f: dict) -> int:
    """Local hours holding a window of the range (one per UTC hour, except across a 30-minute DST shift)."""
    hours = (f["end_window"] - f["first_window"]) // HOUR_NS + 1
    if hours > 20_000:  # beyond the limit whatever the zone does
        return hours
    # each window belongs to the local hour starting its local minutes earlier
    return len({ns // 10**9 - f["local"](ns).minute * 60 for ns in range(f["first_window"], f["end_window"],
                                                                          WINDOW_NS)})


def _too_many_buckets(query: dict) -> bool:
    f = _facts(query)
    first, last = f["local"](f["first_window"]).date(), f["local"](f["end_window"] - WINDOW_NS).date()
    granularity = f["granularity"]
    if granularity == "quarter_hour":
        count = (f["end_window"] - f["first_window"]) // WINDOW_NS
    elif granularity == "hour":
        count = _local_hours(f)
    else:
        count = {"day": (last - first).days + 1,
                 "week": (last - timedelta(days=last.weekday()) - (first - timedelta(days=first.weekday()))).days // 7
                 + 1,
                 "month": (last.year - first.year) * 12 + last.month - first.month + 1}[granularity]
    return count > 10_000


RULES = {
    "missing 'id'": lambda q: q.get("scope") != "all" and "id" not in q,
    "unexpected 'id'": lambda q: q.get("scope") == "all" and bool(q.get("id")),
    "empty range": lambda q: _facts(q)["start"] >= _facts(q)["end"],
    "range too long": lambda q: _facts(q)["span"] > timedelta(days=MAX_RANGE_DAYS),
    "range holds no window": lambda q: (f := _facts(q))["first_window"] >= f["end_window"],
    "out of supported range": _out_of_range,
    "too many buckets": _too_many_buckets,
}
