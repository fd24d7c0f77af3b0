"""What every adapter shares: the shape of its output, body parsing, and small field readers.

An adapter turns one HTTP body into *candidate* contract v1 events. It never decides validity on its own
where the contract can: candidates go through :class:`pipeline.contract.ContractDecoder` afterwards, so a
reason such as ``missing_field`` or ``inconsistent_tokens`` means the same thing here as in the pipeline.
Candidates are built from known fields only; nothing else in a payload (headers, prompts, secrets) is
ever copied into them.

Adapters are total: whatever the bytes, the only exceptions that leave ``map()`` are :class:`BodyError` (the
body as a whole, HTTP 400) and, inside, :class:`ItemError` turned into a per-record :class:`Problem`. Any
other exception raised while reading the body (msgspec raises ``RecursionError`` for deep nesting and
``UnicodeDecodeError`` for invalid UTF-8 inside strings) or while mapping one record is that body's or that
record's fault, and becomes a rejection named by :func:`reason_for` (the worker's reasons, the exception
class in the detail; ``mapping_failed`` for an unexpected failure while mapping a record).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, TypeVar

import msgspec

from pipeline.contract import rejection_for
from pipeline.units import TOP_LEVEL

# Floats are parsed as Decimal so that costs and fractional epoch seconds stay exact.
_DOCUMENT = msgspec.json.Decoder(float_hook=Decimal)
_COST_QUANTUM = Decimal(1).scaleb(-18)  # the contract keeps at most 18 decimal places
# Beyond these magnitudes a value is nonsense; checked before any conversion, which for a Decimal such as
# 1e999999999 would build a number of a billion digits.
MAX_SECONDS_DIGITS = 12  # epoch seconds < 10**13 (the contract's own bound is in milliseconds)
MAX_COST_DIGITS = 20  # the contract's integer part
NDJSON = "application/x-ndjson"


class BodyError(ValueError):
    """The body as a whole cannot be read (HTTP 400); ``reason`` uses the contract's vocabulary."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class ItemError(ValueError):
    """One record of the body cannot become an event; the others still can."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A would-be contract event: the raw JSON of one event (``bytes``) or its fields (``dict``)."""

    index: int  # position of its record in the request (see each adapter for what a record is)
    value: bytes | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Problem:
    index: int
    reason: str
    detail: str


@dataclass
class Mapped:
    """An adapter's verdict on one body."""

    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: int = 0  # records that are not usage at all (e.g. non-LLM spans): neither counted nor rejected


# Details quote exception messages, which are short and name no field value; the cap keeps them so.
MAX_DETAIL_CHARS = 300


def reason_for(error: BaseException, otherwise: str = "undecodable") -> tuple[str, str]:
    """``(reason, detail)`` for an exception raised while reading or mapping untrusted input, in the worker's
    vocabulary (:func:`pipeline.contract.rejection_for`): ``invalid_encoding`` (not UTF-8, or a string JSON
    cannot carry), ``too_deep`` (nesting beyond what the decoder recurses into), ``invalid_json``,
    ``invalid_field`` / ``missing_field`` (msgspec's validation errors), and ``otherwise`` for anything else:
    ``undecodable`` while reading bytes, ``mapping_failed`` while mapping a decoded record. The detail
    names the exception class, so a surprise is traceable without the payload being logged.
    """
    rejection = rejection_for(error, b"") if isinstance(error, Exception) else None
    if rejection is None or rejection.reason == "undecodable":
        return otherwise, f"{type(error).__name__}: {error}"[:MAX_DETAIL_CHARS]
    detail = rejection.detail if rejection.detail.startswith(type(error).__name__) \
        else f"{type(error).__name__}: {rejection.detail}"
    return rejection.reason, detail[:MAX_DETAIL_CHARS]


def refuse_empty(body: bytes) -> None:
    """An empty (or whitespace-only) body is ``empty_message``, as the worker calls such a Kafka record."""
    if not body.strip():
        raise BodyError("empty_message", "the body is empty")


def parse_document(body: bytes) -> Any:
    """The JSON body as Python objects (floats as Decimal). Raises only :class:`BodyError`."""
    refuse_empty(body)
    try:
        return _DOCUMENT.decode(body)
    except Exception as error:  # noqa: BLE001 - any failure to read the body is the body's fault
        raise BodyError(*reason_for(error)) from None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An NDJSON line that cannot be read: rejected on its own, the other lines still count."""

    reason: str
    detail: str


def ndjson_lines(body: bytes) -> list[bytes]:
    return [line for line in body.splitlines() if line.strip()]


def parse_records(body: bytes, content_type: str) -> list[Any]:
    """Records of a body holding one JSON object, a JSON array of them, or NDJSON (one per line).

    NDJSON is also recognised when it is labelled ``application/json``: LiteLLM's generic API logger sends its
    ``ndjson`` log format with that content type (litellm/integrations/generic_api/generic_api_callback.py).
    A body that is not one JSON document but whose first line is a JSON object on its own, followed by more
    lines, is read line by line (each bad line rejected alone) instead of being refused whole.
    """
    refuse_empty(body)
    if content_type == NDJSON:
        records = [_parse_line(line) for line in ndjson_lines(body)]
    else:
        try:
            document = parse_document(body)
        except BodyError:
            if not ndjson_in_disguise(body):
                raise
            records = [_parse_line(line) for line in ndjson_lines(body)]
        else:
            records = document if isinstance(document, list) else [document]
    if not records:
        raise BodyError("empty_batch", "the body holds no record")
    return records


def ndjson_in_disguise(body: bytes) -> bool:
    """Several lines, the first of them a JSON object on its own: NDJSON whatever the label says."""
    lines = ndjson_lines(body)
    return len(lines) > 1 and isinstance(_parse_line(lines[0]), dict)


def _parse_line(line: bytes) -> Any:
    try:
        return _DOCUMENT.decode(line)
    except Exception as error:  # noqa: BLE001 - the line's fault, whatever the exception
        return Unreadable(*reason_for(error))


def response_with_usage(envelope: dict[str, Any], what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The provider response inside an envelope and its ``usage`` object; both are required."""
    response = envelope.get("response")
    if not isinstance(response, dict):
        raise ItemError("missing_field", f"`response` ({what}) is required")
    usage = response.get("usage")
    if not isinstance(usage, dict):
        raise ItemError("missing_field", "`response.usage` is required")
    return response, usage


def map_each(records: Iterable[Any], map_record: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Mapped:
    """Apply ``map_record(record) -> dict | None`` to every record; None means "not usage, skip"."""
    return map_items(records, lambda record: map_record(_readable_object(record)))


def map_items(items: Iterable[T], map_item: Callable[[T], dict[str, Any] | None]) -> Mapped:
    """Apply ``map_item`` to every item, keeping each item's index: an ItemError, or any other exception,
    rejects that item alone. Should walking ``items`` itself fail, the body is unreadable (BodyError)."""
    mapped = Mapped()
    try:
        for index, item in enumerate(items):
            _map_one(mapped, index, item, map_item)
    except Exception as error:  # noqa: BLE001 - a record can no longer be located: the body's fault
        raise BodyError(*reason_for(error)) from None
    return mapped


def _map_one(mapped: Mapped, index: int, item: T, map_item: Callable[[T], dict[str, Any] | None]) -> None:
    try:
        event = map_item(item)
    except ItemError as error:
        mapped.problems.append(Problem(index, error.reason, error.detail))
        return
    except Exception as error:  # noqa: BLE001 - whatever a record makes a mapper raise is that record's fault
        mapped.problems.append(Problem(index, *reason_for(error, otherwise="mapping_failed")))
        return
    if event is None:
        mapped.skipped += 1
    else:
        mapped.candidates.append(Candidate(index, event))


def _readable_object(record: Any) -> dict[str, Any]:
    if isinstance(record, Unreadable):
        raise ItemError(record.reason, record.detail)
    if not isinstance(record, dict):
        raise ItemError("not_an_object", "a record must be a JSON object")
    return record


MAX_REQUEST_ID_CHARS = 128  # the contract's bound


def derived_request_id(*parts: Any) -> str | None:
    """A request id built from a payload's own identifying values, or None when the first (the id the format
    names) is missing: ``part1@part2@...``, or ``sha256:<hex>`` of the same text when that would exceed the
    contract's 128 characters. Deterministic, so a retried payload repeats it (docs/ingest.md, "Request ids")."""
    if parts[0] is None or parts[0] == "":
        return None
    text = "@".join("" if part is None else str(part) for part in parts)
    if len(text) <= MAX_REQUEST_ID_CHARS:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def usage_digest(usage: Any) -> str:
    """8 hex digits of the canonical JSON of a ``usage`` object: two responses of one reused id that differ in
    any count differ here; a retry's identical usage does not."""
    return hashlib.sha256(msgspec.json.encode(usage, order="sorted")).hexdigest()[:8]


def dig(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...``, or None where any level is absent or not an object."""
    for name in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(name)
    return obj


def first(*values: Any) -> Any:
    """The first value that is not None (0 and "" count as present)."""
    return next((value for value in values if value is not None), None)


def without_none(fields: dict[str, Any]) -> dict[str, Any]:
    """Absent stays absent, so the contract reports ``missing_field`` rather than a null."""
    return {name: value for name, value in fields.items() if value is not None}


def seconds_to_ms(value: Any, name: str) -> int | None:
    """Epoch seconds (int, Decimal or numeric string) as integer milliseconds, truncated."""
    if value is None:
        return None
    try:
        seconds = Decimal(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else value
        if not isinstance(seconds, Decimal) or not seconds.is_finite() or seconds < 0 \
                or seconds.adjusted() >= MAX_SECONDS_DIGITS:
            raise InvalidOperation
        return int(seconds * 1000)
    except (InvalidOperation, ValueError):
        raise ItemError("invalid_field", f"`{name}` must be epoch seconds") from None


def cost_text(value: Any, name: str) -> str | None:
    """A non-negative cost as the contract's plain decimal string (never through a float)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise ItemError("invalid_field", f"`{name}` must be a number")
    try:
        cost = Decimal(value)
    except InvalidOperation:
        raise ItemError("invalid_field", f"`{name}` must be a number") from None
    if not cost.is_finite() or cost < 0 or cost.adjusted() >= MAX_COST_DIGITS:
        raise ItemError("invalid_field", f"`{name}` must be a non-negative number below 10^20")
    if cost.as_tuple().exponent < -18:  # more places than the contract keeps: rounded half-even
        cost = cost.quantize(_COST_QUANTUM, rounding=ROUND_HALF_EVEN)
    text = format(cost, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---- reading usage units ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Modality:
    """A path step into a list of ``{"modality": "TEXT", "tokenCount": n}`` items (Gemini's per-modality
    details): the item whose ``modality`` equals ``value``."""

    value: str
    key: str = "modality"


Path = tuple[str | Modality, ...]
Mapping_ = tuple[Path, str]  # (where in the provider's usage object, the genai-prices unit it adds to)


def read_units(usage: dict[str, Any], mappings: Iterable[Mapping_], where: str = "usage") -> dict[str, int]:
    """The unit counts a provider's usage object reports, by genai-prices unit name (pipeline/units.py).

    Several mappings to one unit add up (Anthropic's input is three disjoint buckets). Absent values are
    skipped; a value that is not a non-negative integer is the record's fault (``invalid_field``, naming the
    path), checked before any sum so a bad part cannot hide inside a plausible total.
    """
    units: dict[str, int] = {}
    for path, unit in mappings:
        value = _at(usage, path)
        if value is None:
            continue
        if type(value) is not int or value < 0:
            raise ItemError("invalid_field", f"`{where}.{_dotted(path)}` must be a non-negative integer")
        units[unit] = units.get(unit, 0) + value
    return units


def _at(obj: Any, path: Path) -> Any:
    for step in path:
        if isinstance(step, Modality):
            if not isinstance(obj, list):
                return None
            obj = next((item for item in obj if isinstance(item, dict) and item.get(step.key) == step.value), None)
        elif isinstance(obj, dict):
            obj = obj.get(step)
        else:
            return None
    return obj


def _dotted(path: Path) -> str:
    return ".".join(f"[{s.key}={s.value}]" if isinstance(s, Modality) else s for s in path)


def unit_fields(units: dict[str, int]) -> dict[str, Any]:
    """Contract fields for unit counts: the top-level token fields (``output_reasoning_tokens`` is
    ``reasoning_tokens``), every other non-zero unit in the ``usage`` object."""
    fields: dict[str, Any] = {name: units[unit] for name, unit in TOP_LEVEL.items() if unit in units}
    extra = {unit: count for unit, count in units.items() if unit not in _TOP_LEVEL_UNITS and count}
    if extra:
        fields["usage"] = extra
    return fields


_TOP_LEVEL_UNITS = frozenset(TOP_LEVEL.values())
