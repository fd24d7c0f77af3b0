"""Query parameters declared once (pipeline/usage/parameters.py): strict decoding of the query string, and a
check that implements the declared JSON Schema keywords exactly as a standard validator reads them."""

from __future__ import annotations

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.usage.api import ROUTES
from pipeline.usage.parameters import MAX_FIELDS, Param, QueryError, conforms, read_query, shown

NAME = Param("name", {"type": "string", "maxLength": 5, "pattern": "^[^\\u0000-\\u001f\\u007f]*$", "default": ""},
             "a name", "at most 5 characters")
COUNT = Param("count", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}, "a count", "1..1000")
KIND = Param("kind", {"type": "string", "enum": ["a", "b"]}, "a kind", "a or b", required=True, error="unknown kind")
PARAMS = (NAME, COUNT, KIND)


def read(query: str) -> dict:
    return read_query(query, PARAMS, "/api/v1/test")


def refused(query: str) -> QueryError:
    with pytest.raises(QueryError) as raised:
        read(query)
    return raised.value


def test_values_are_read_and_defaults_filled_in():
    assert read("kind=a") == {"name": "", "count": 10, "kind": "a"}
    assert read("kind=b&count=1000&name=%C3%A9t%C3%A9+x") == {"name": "été x", "count": 1000, "kind": "b"}


@pytest.mark.parametrize("query,error", [
    ("", "missing 'kind'"), ("kind=c", "unknown kind"), ("kind=", "unknown kind"), ("kind=A", "unknown kind"),
    ("kind=a&kind=a", "repeated parameter"), ("kind=a&other=1", "unknown parameter"),
    ("kind=a&name=%FF", "invalid encoding"), ("kind=a&%C3=1", "invalid encoding"),
    ("kind=a&name=abcdef", "bad 'name'"), ("kind=a&name=a%00", "bad 'name'"), ("kind=a&name=a%0A", "bad 'name'"),
    ("kind=a&name=%7F", "bad 'name'"),
    ("kind=a&count=0", "bad 'count'"), ("kind=a&count=1001", "bad 'count'"), ("kind=a&count=01", "bad 'count'"),
    ("kind=a&count=+5", "bad 'count'"), ("kind=a&count=5.0", "bad 'count'"), ("kind=a&count=%D9%A3", "bad 'count'"),
    ("kind=a&count=" + "9" * 5000, "bad 'count'"), ("kind=a&count=", "bad 'count'"),
    ("&".join(f"x{i}=1" for i in range(MAX_FIELDS + 1)), "too many parameters"),
])
def test_bad_query_strings_are_refused_with_a_reason(query, error):
    problem = refused(query)
    assert problem.error == error and problem.detail
    assert len(problem.detail) < 300 and "\x00" not in problem.detail and "\n" not in problem.detail


def test_a_reason_quotes_at_most_the_start_of_a_value_escaped():
    assert shown("abc") == "'abc'"
    assert shown("a\x00b") == "'a\\x00b'"
    long = shown("é" * 5000)
    assert long.startswith("'\\xe9") and long.endswith("(5000 characters)") and len(long) < 300


# Every schema a route declares, checked by `conforms` and by jsonschema_rs (the validator schemathesis uses,
# with ECMA-262 regular expressions) on the same values: they must agree, so what the document promises is
# what the server checks.
DECLARED = {(param.name, repr(param.schema)): param.schema for route in ROUTES for param in route.params}


def _as_sent(schema: dict, text: str):
    """The value the server checks for a query text: an int for integer schemas when the text is one."""
    if schema.get("type") == "integer":
        try:
            return int(text)
        except ValueError:
            return text
    return text


@pytest.mark.parametrize("schema", list(DECLARED.values()), ids=[name for name, _ in DECLARED])
@settings(max_examples=300, deadline=None, database=None)
@given(text=st.one_of(st.text(max_size=300), st.sampled_from(["", "UTC", "Europe/Berlin", "2026-11-01",
                                                              "2026-11-01T09:00:00Z", "2024-02-29", "key\n", "5",
                                                              "2026-11-01\n", "hour", "cost", "x" * 256])))
def test_the_check_agrees_with_a_standard_validator_on_every_declared_schema(schema, text):
    value = _as_sent(schema, text)
    validator = jsonschema_rs.Draft202012Validator({k: v for k, v in schema.items() if k != "default"})
    assert conforms(schema, value) == validator.is_valid(value), (schema, text)
