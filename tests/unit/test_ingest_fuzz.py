"""Property-based fuzzing (hypothesis) of the collector's body handling and of every adapter's ``map()``.

The properties: whatever the bytes, an adapter raises nothing but :class:`BodyError`; judging what it
mapped raises nothing; every accepted event is a valid contract event; Content-Encoding parsing and
inflating raise nothing but :class:`BodyRefused` and never produce more than the limit; the whole HTTP
application answers 200/400/413/415 with a JSON body, never 5xx.

Inputs are JSON texts built as bytes (so they can hold invalid UTF-8, lone surrogate escapes, NaN, 1e400,
huge integers, duplicate keys, deep nesting), valid bodies of every route with hostile values in some of
their fields, and byte-level mutations of valid bodies.

The bounded run here takes about a minute in all. A longer run: ``METERLINE_FUZZ_EXAMPLES=20000
.venv/bin/python -m pytest tests/unit/test_ingest_fuzz.py`` (examples per test; the default is below).
Whatever a run finds is added to tests/support/hostile.py or as a regression test below.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.config import IngestSettings, RollupSettings
from pipeline.contract import ContractDecoder
from pipeline.ingest.adapters.base import BodyError
from pipeline.ingest.app import Collector
from pipeline.ingest.batcher import KeyedBatcher
from pipeline.ingest.body import BodyRefused, content_coding, inflate
from pipeline.ingest.metrics import IngestMetrics
from pipeline.ingest.routes import build_routes
from pipeline.ingest.validation import EventValidator, TimeWindow
from support.hostile import VALUES, leaf_paths, route_templates, with_raw_values

EXAMPLES = int(os.environ.get("METERLINE_FUZZ_EXAMPLES", "0")) or None
NOW_MS = 1_795_605_300_000
TEMPLATES = route_templates(NOW_MS)
ROUTES = {route.path: route for route in build_routes()}
# Every (adapter, content type) pair the collector serves.
READERS = sorted({(path, ctype) for path, route in ROUTES.items() for ctype in route.adapters})
DECODER = ContractDecoder()
VALIDATOR = EventValidator(DECODER, TimeWindow.of(RollupSettings(), lambda: NOW_MS))


def fuzz(default_examples: int):
    """Hypothesis settings for one fuzz test: ``default_examples`` unless METERLINE_FUZZ_EXAMPLES is set."""
    return settings(max_examples=EXAMPLES or default_examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])


# --- JSON-ish bytes ------------------------------------------------------------------------------------

def _field_names() -> list[str]:
    names = set()
    for _, _, template in TEMPLATES.values():
        for path in leaf_paths(template):
            names.update(step for step in path if isinstance(step, str))
    names.update({"api_key", "cache_write_tokens", "resourceSpans", "scopeSpans", "spans", "resource", "value",
                  "stringValue", "intValue", "doubleValue", "boolValue", "dataschema", "data_base64",
                  "cache_creation_input_tokens", "hidden_params", "usage_object", "created_at", "input_tokens_details",
                  "output_tokens_details", "cache_creation_tokens", "status", "code"})
    return sorted(names)


KEYS = st.one_of(st.sampled_from(_field_names()).map(lambda name: json.dumps(name).encode()),
                 st.text(max_size=8).map(lambda text: json.dumps(text).encode()))
HOSTILE_SCALARS = [value for name, value in VALUES.items() if name not in ("huge_string", "deep_100k")] + [
    b"Infinity", b"-Infinity", b"-0.0", b"1e-400", b"0.1e999999999", b'"\\u0000"', b'"\\ud83d\\ude00"',
    b'"2026-11-25T11:15:00Z"', b'"2026-02-30T25:61:00Z"', b'"0.000000000000000000001"', b'"1e5"',
    str(NOW_MS).encode(), str(NOW_MS * 1_000_000).encode(), str(NOW_MS / 1000).encode(), b"[" * 3000 + b"]" * 3000]
SCALARS = st.one_of(
    st.sampled_from(HOSTILE_SCALARS),
    st.integers().map(lambda i: str(i).encode()),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: str(d).encode()),
    st.floats().map(lambda f: json.dumps(f).encode()),  # NaN and Infinity too, which JSON does not allow
    st.text(max_size=12).map(lambda text: json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=12).map(lambda raw: b'"' + raw.replace(b'"', b"").replace(b"\\", b"") + b'"'),
)


def _array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def _object(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(key + b":" + value for key, value in pairs) + b"}"


JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(_array),
    st.lists(st.tuples(KEYS, inner), max_size=6).map(_object)), max_leaves=15)


@st.composite
def template_with_hostile_values(draw, route: str) -> bytes:
    """A valid body of ``route`` with one to three of its scalars replaced by hostile JSON."""
    _, _, template = TEMPLATES[route]
    paths = draw(st.lists(st.sampled_from(leaf_paths(template)), min_size=1, max_size=3, unique=True))
    return with_raw_values(template, {path: draw(JSON_VALUES) for path in paths})


@st.composite
def mutated(draw, body: bytes) -> bytes:
    """``body`` with a few bytes replaced, inserted or cut."""
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        patch = draw(st.binary(min_size=0, max_size=4) | st.sampled_from([b"\xff", b"\\ud800", b"[[[", b'"', b"}"]))
        cut = draw(st.integers(0, 3))
        data[at:at + cut] = patch
    return bytes(data)


def bodies_for(route: str) -> st.SearchStrategy[bytes]:
    valid = json.dumps(TEMPLATES[route][2]).encode()
    one = st.one_of(JSON_VALUES, template_with_hostile_values(route), mutated(valid))
    return st.one_of(one, st.lists(one, min_size=1, max_size=4).map(_array),
                     st.lists(one, min_size=1, max_size=4).map(b"\n".join))


def route_of(path: str) -> str:
    return next(name for name, (p, _, _) in TEMPLATES.items() if p == path)


# --- adapters ------------------------------------------------------------------------------------------

@fuzz(1000)
@given(data=st.data())
def test_adapters_raise_nothing_but_body_error_and_accept_only_valid_events(data):
    path, content_type = data.draw(st.sampled_from(READERS), label="reader")
    body = data.draw(bodies_for(route_of(path)), label="body")
    adapter = ROUTES[path].adapter_for(content_type)
    try:
        mapped = adapter.map(body, content_type)
    except BodyError as error:
        assert error.reason and error.detail
        return
    verdict = VALIDATOR.judge(mapped)
    indexes = [c.index for c in mapped.candidates] + [p.index for p in verdict.rejected]
    assert all(index >= 0 for index in indexes)
    assert all(problem.reason and problem.detail for problem in verdict.rejected)
    for key, value in verdict.accepted:
        events, rejections = DECODER.decode(value, key.encode())
        assert len(events) == 1 and not rejections, value


# Regressions: each escaped the adapters (a 500 from the collector) before. (path, body, expected answer:
# "body" reason for a 400, or the per-record reasons of a 200.)
REGRESSIONS = [
    ("/v1/otlp/v1/traces", b'{"resourceSpans": [1, {"scopeSpans": [null, {"spans": [7]}]}]}', ["not_an_object"]),
    ("/v1/otlp/v1/traces", with_raw_values(TEMPLATES["otlp"][2], {
        ("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "attributes", 0, "value", "stringValue"): b"[1]"}),
     ["invalid_field"]),
    ("/v1/events", b'[{"model": "\xff"}]', ["invalid_encoding"]),
    ("/v1/openai", b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    ("/v1/litellm", b'{"id": "\xed\xa0\x80"}', "invalid_encoding"),
]


@pytest.mark.parametrize("path, body, expected", REGRESSIONS)
def test_regressions(path, body, expected):
    adapter = ROUTES[path].adapter_for("application/json")
    try:
        verdict = VALIDATOR.judge(adapter.map(body, "application/json"))
    except BodyError as error:
        assert error.reason == expected
        return
    assert [problem.reason for problem in verdict.rejected] == expected


# --- body handling -------------------------------------------------------------------------------------

CODINGS = st.one_of(st.sampled_from(["gzip", "x-gzip", "deflate", "identity", "GZip", " gzip ", "br", "zstd",
                                     "compress", "gzip, identity", "identity, deflate", "gzip,gzip", "", ","]),
                    st.text(max_size=20))


@fuzz(500)
@given(values=st.lists(CODINGS, max_size=3))
def test_content_coding_is_one_supported_coding_or_a_415(values):
    try:
        coding = content_coding(values)
    except BodyRefused as refused:
        assert (refused.status, refused.error) == (415, "unsupported_content_encoding")
        return
    assert coding in (None, "gzip", "deflate")


@st.composite
def compressed(draw) -> tuple[str, bytes, bytes | None]:
    """(coding, body, the plain bytes when the body is a valid stream of them)."""
    plain = draw(st.binary(max_size=3000) | st.integers(0, 200_000).map(bytes))
    coding = draw(st.sampled_from(["gzip", "deflate"]))
    if coding == "gzip":
        parts = draw(st.integers(1, 3))
        body = b"".join(gzip.compress(plain[i::parts]) for i in range(parts))
        plain = b"".join(plain[i::parts] for i in range(parts))
    else:
        body = zlib.compress(plain)
        if draw(st.booleans()):
            body = body[2:-4]  # raw deflate, as some clients send it
    if draw(st.booleans()):
        return coding, draw(mutated(body)), None
    return coding, body, plain


@fuzz(600)
@given(case=compressed(), limit=st.integers(1024, 150_000))
@example(case=("gzip", gzip.compress(bytes(10**6)), None), limit=1024)
@example(case=("gzip", b"", None), limit=1024)
def test_inflate_returns_the_plain_body_or_refuses_it(case, limit):
    coding, body, plain = case
    try:
        out = inflate(body, coding, limit)
    except BodyRefused as refused:
        assert refused.status in (400, 413) and refused.error in ("invalid_compression", "body_too_large")
        if plain is not None:  # a valid stream is refused only for its size
            assert (refused.status, len(plain) > limit) == (413, True)
        return
    assert len(out) <= limit
    if plain is not None:
        assert out == plain


# --- the whole HTTP application ------------------------------------------------------------------------

async def _acknowledge(messages) -> None:
    for message in messages:
        message.acked.set_result(None)


@pytest.fixture
async def http_client():
    settings_ = IngestSettings(tokens=("t",), max_body_bytes=256 * 1024, linger_s=0.001, produce_timeout_s=5)
    batcher = KeyedBatcher(_acknowledge, max_events=1000, linger_s=0.001)
    collector = Collector(settings_, VALIDATOR, batcher, IngestMetrics(CollectorRegistry()))
    async with TestClient(TestServer(collector.application())) as client:
        yield client
    await batcher.close()


CONTENT_TYPES = st.sampled_from(["application/json", "application/x-ndjson", "application/cloudevents+json",
                                 "application/cloudevents-batch+json", "text/plain", "application/json; charset=utf-16",
                                 None])


@fuzz(200)
@given(data=st.data())
async def test_the_collector_answers_every_body_without_a_5xx(http_client, data):
    path = data.draw(st.sampled_from(sorted(ROUTES)), label="path")
    body = data.draw(bodies_for(route_of(path)), label="body")
    headers = {"Authorization": "Bearer t"}
    content_type = data.draw(CONTENT_TYPES, label="content type")
    if content_type:
        headers["Content-Type"] = content_type
    coding = data.draw(st.sampled_from([None, "gzip", "deflate", "br", "garbage"]), label="coding")
    if coding:
        headers["Content-Encoding"] = coding
        body = gzip.compress(body) if coding == "gzip" else zlib.compress(body) if coding == "deflate" else body
    response = await http_client.post(path, data=body, headers=headers)
    answer = await response.json()
    assert response.status in (200, 400, 413, 415), (response.status, answer)
    if response.status != 200:
        assert answer["error"] and answer["detail"]

