"""Query parameters declared once: each :class:`Param` carries its JSON Schema, and both the OpenAPI document
and the request check are derived from it, so what the document promises is what the server checks.

Only the schema keywords the API needs are used, and :func:`conforms` implements exactly those: ``type``
(string or integer), ``enum``, ``minLength``/``maxLength`` (in code points, as JSON Schema counts),
``pattern`` (matched against the whole value: ECMA-262 ``$`` never matches before a trailing newline, Python's
``re.search`` would), ``minimum``/``maximum``. Integers are the ASCII digits of a JSON integer, nothing else.

The query string is decoded here, strictly: percent-escapes must form UTF-8, each parameter appears at most
once, and names the route does not declare are refused. Values are never logged, and a reason quotes at most
the first :data:`SHOWN_CHARS` characters of a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


SHOWN_CHARS = 40
MAX_FIELDS = 32  # far more than any route declares; a longer query string is refused before it is read
_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,17}")  # JSON integer syntax, short enough to be exact in an int64


class QueryError(ValueError):
    """A request that cannot be answered as asked; ``error`` is a short title, ``detail`` says what to change.
    The API answers it as a 400 ``{"error", "detail"}``; the CLI prints it and exits with 2."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error, self.detail = error, detail


@dataclass(frozen=True)
class Param:
    """One query parameter: ``name``, its JSON ``schema`` (with ``default`` when optional), a ``description``
    for the OpenAPI document, the 400 ``error`` title when a value does not conform, and ``expect``: what a
    valid value looks like, in words, for the 400's detail."""

    name: str
    schema: dict[str, Any]
    description: str
    expect: str
    required: bool = False
    error: str = ""
    examples: tuple[Any, ...] = field(default=())

    @property
    def error_title(self) -> str:
        return self.error or f"bad '{self.name}'"

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 Parameter Object."""
        described = {"name": self.name, "in": "query", "required": self.required, "description": self.description,
                     "schema": self.schema}
        if self.examples:
            described["examples"] = {f"e{i}": {"value": value} for i, value in enumerate(self.examples)}
        return described


def conforms(schema: dict[str, Any], value: Any) -> bool:
    """Whether ``value`` (a str, or an int for integer schemas) satisfies ``schema`` (the keywords above)."""
    if schema.get("type") == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return schema.get("minimum", value) <= value <= schema.get("maximum", value)
    if not isinstance(value, str):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return False
    return "pattern" not in schema or _compiled(schema["pattern"]).fullmatch(value) is not None


def read_query(raw_query: str, params: Iterable[Param], path: str) -> dict[str, Any]:
    """The declared parameters of one request: name -> value (str, or int for integer schemas), defaults
    filled in. ``raw_query`` is the query string as sent (percent-escapes intact).

    Raises :class:`QueryError` for: undecodable escapes ("invalid encoding"), too many fields, a repeated or
    undeclared name, a missing required parameter, or a value that does not conform to its schema (the
    parameter's own error title)."""
    declared = {param.name: param for param in params}
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise QueryError("invalid encoding", "the query string's percent-escapes are not UTF-8; encode "
                                             "parameter values as UTF-8 before percent-encoding them") from None
    except ValueError:
        raise QueryError("too many parameters", f"at most {MAX_FIELDS} query parameters") from None
    values: dict[str, Any] = {}
    for name, text in pairs:
        param = declared.get(name)
        if param is None:
            accepted = ", ".join(declared) or "no parameters"
            raise QueryError("unknown parameter", f"{shown(name)} is not a parameter of {path}; it takes: {accepted}")
        if name in values:
            raise QueryError("repeated parameter", f"'{name}' is given more than once; give it once")
        values[name] = _conforming(param, text)
    for param in declared.values():
        if param.name not in values:
            if param.required:
                raise QueryError(f"missing '{param.name}'", f"'{param.name}' is required: {param.expect}")
            values[param.name] = param.schema.get("default")
    return values


def shown(text: str) -> str:
    """A value as a reason may quote it: escaped (no control characters), at most SHOWN_CHARS characters."""
    if len(text) <= SHOWN_CHARS:
        return ascii(text)
    return f"{ascii(text[:SHOWN_CHARS])[:-1]}...' ({len(text)} characters)"


def _conforming(param: Param, text: str) -> Any:
    value: Any = text
    if param.schema.get("type") == "integer":
        value = int(text) if _INTEGER.fullmatch(text) else None
    if value is None or not conforms(param.schema, value):
        raise QueryError(param.error_title, f"{shown(text)}: {param.expect}")
    return value


_PATTERNS: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    if pattern not in _PATTERNS:
        _PATTERNS[pattern] = re.compile(pattern)
    return _PATTERNS[pattern]
