"""The quick start's collector payloads: each maps, through the route README posts it to, to exactly the
requests tests/support/quickstart.py lists, at the time the placeholder was replaced with; README's ``sed``
does that replacement in plain ``sh``; README has a curl for every route."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from pipeline.contract import ContractDecoder
from pipeline.ingest.routes import JSON, build_routes
from pipeline.config import RollupSettings
from pipeline.ingest.validation import EventValidator, TimeWindow
from tests.support.quickstart import CASES, PLACEHOLDER, QUICKSTART_DIR, payload

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
ROUTES = {route.path: route for route in build_routes()}
NOW_S = 1_900_000_123  # any time: the payloads must carry exactly this one


def judge(case, body: bytes):
    """What the collector decides for ``body`` on the case's route, with "now" at NOW_S."""
    validator = EventValidator(ContractDecoder(), TimeWindow.of(RollupSettings(), clock_ms=lambda: NOW_S * 1000))
    return validator.judge(ROUTES[case.path].adapter_for(JSON).map(body, JSON))


def test_every_payload_file_has_a_case_and_every_route_a_payload():
    assert {p.stem for p in QUICKSTART_DIR.glob("*.json")} == {case.name for case in CASES}
    assert {case.path for case in CASES} == {"/v1/events", "/v1/openai", "/v1/anthropic", "/v1/litellm",
                                             "/v1/otlp/v1/traces"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_payload_maps_to_its_requests_at_the_substituted_time(case):
    verdict = judge(case, payload(case.name, NOW_S))
    assert verdict.rejected == []
    events = [json.loads(value) for _, value in verdict.accepted]
    assert {key for key, _ in verdict.accepted} == {case.key}
    got = [(e["model"], e.get("provider"), e["input_tokens"], e["output_tokens"], e.get("cache_read_tokens", 0),
            e.get("cache_write_tokens", 0), e.get("reasoning_tokens", 0)) for e in events]
    want = [(r.model, r.provider, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
             r.reasoning_tokens) for r in case.requests]
    assert got == want
    # Every timestamp is the substituted second (plus the sub-second part the payload gives it): no fixed
    # time is left that the worker would dead-letter as too_late.
    assert all(NOW_S * 1000 <= e["timestamp"] < (NOW_S + 1) * 1000 for e in events)
    assert len({e["request_id"] for e in events}) == len(events)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_without_the_substitution_every_event_is_rejected_as_too_late(case):
    verdict = judge(case, (QUICKSTART_DIR / f"{case.name}.json").read_bytes())
    assert verdict.accepted == []
    assert [problem.reason for problem in verdict.rejected] == ["too_late"] * len(case.requests)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_placeholder_is_only_in_time_fields(case):
    text = (QUICKSTART_DIR / f"{case.name}.json").read_text()
    lines = [line for line in text.splitlines() if PLACEHOLDER in line]
    assert lines
    assert all(re.search(r'"(timestamp|created|created_at|startTime|endTime|\w+UnixNano)"', line) for line in lines)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_readme_sed_substitution_works_in_plain_sh(case):
    result = subprocess.run(["sh", "-c", f'NOW={NOW_S}; sed "s/{PLACEHOLDER}/$NOW/g" '
                                           f'schemas/examples/quickstart/{case.name}.json'],
                            cwd=ROOT, capture_output=True, check=True)
    assert result.stdout == payload(case.name, NOW_S)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_readme_has_a_curl_for_the_route_with_its_payload_and_key(case):
    assert re.search(rf'sed "s/{PLACEHOLDER}/\$NOW/g" schemas/examples/quickstart/{case.name}\.json \| curl .*\n'
                     rf'.*--data-binary @- http://127\.0\.0\.1:6070{re.escape(case.path)}; echo', README)
    assert f"`{case.key}`" in README
