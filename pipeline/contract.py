"""Event contract v1: decoding and validating what gateways put on the usage topic.

A Kafka message value is one event object or a batch (a JSON array of event objects with the same
``api_key_id``, which is also the message key). Every event of a batch is judged on its own: the good
ones are returned, each bad one becomes a :class:`Rejection` with a precise reason and its own bytes.
The JSON Schema published for producers is ``schemas/usage-event.v1.schema.json``.

:meth:`ContractDecoder.decode` is total: whatever the bytes (invalid UTF-8, nesting deeper than the parser
allows, numbers out of range, a null record value), it returns rejections and never raises. Anything that
goes wrong while reading one message is that message's fault, never a reason to stop metering
(docs/exactly-once.md, "Whose fault is it").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

import msgspec

from pipeline.units import IMPLICIT, TOP_LEVEL, USAGE_UNITS, inconsistency

# Upper bounds keep a hostile or buggy producer from overflowing UInt64 sums in ClickHouse.
MAX_TOKENS = 10**12
MAX_EPOCH_MS = 10**13  # year 2286

Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
OptionalLabel = Annotated[str, msgspec.Meta(max_length=256)]
# The names the ``usage`` object may hold (pipeline/units.py): any other name is rejected, not ignored.
UsageUnit = Literal[USAGE_UNITS]  # type: ignore[valid-type]
ServiceTier = Annotated[str, msgspec.Meta(max_length=64)]


class UsageEvent(msgspec.Struct, gc=False, omit_defaults=True):
    """One gateway request. After :meth:`ContractDecoder.decode`, ``timestamp`` is epoch milliseconds
    (int) and ``api_key_id`` is set (a raw ``api_key`` secret has been replaced by its hash). Encoded, it
    is the normalised contract event: defaults, and the dropped secret, are left out."""

    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    model: Label
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)] | Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)]
    input_tokens: Tokens
    output_tokens: Tokens
    api_key_id: Label | None = None
    api_key: str | None = None
    provider: OptionalLabel = ""
    cache_read_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    reasoning_tokens: Tokens = 0
    org_id: OptionalLabel = ""
    project_id: OptionalLabel = ""
    status: Literal["ok", "error"] = "ok"
    latency_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    gateway_cost_usd: str | None = None
    # Every other unit genai-prices prices, by its genai-prices name (pipeline/units.py); None when there is
    # none. Normalised: zero counts are dropped, and an empty object becomes None.
    usage: dict[UsageUnit, Tokens] | None = None
    # The provider's service tier or processing mode ("batch", "flex", "priority", ...): selects tier prices.
    service_tier: ServiceTier = ""


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event (or a whole message) that cannot be counted, and why."""

    reason: str
    detail: str
    raw: bytes  # the offending bytes, with any api_key secret replaced by its hash
    index: int | None = None  # position in a batch; None when the whole message is rejected


# Every reason a consumed event can be dead-lettered with; metrics and the DLQ use these names.
REASONS = (
    "tombstone",
    "empty_message",
    "invalid_encoding",
    "too_deep",
    "invalid_json",
    "undecodable",
    "not_an_object",
    "empty_batch",
    "batch_too_large",
    "missing_field",
    "invalid_field",
    "missing_api_key",
    "inconsistent_tokens",
    "key_mismatch",
    "too_late",
    "future_timestamp",
    "mapping_failed",
)
# Identifiers must not hold C0 control characters or DEL: they end up in CSV files, logs, HTTP headers and
# terminals. JSON can carry them only escaped (\u0000, \n) or, for DEL, raw.
ID_FIELDS = ("request_id", "api_key_id", "model", "provider", "org_id", "project_id")
LABEL_FIELDS = (*ID_FIELDS, "service_tier")
_CONTROL = re.compile("[\x00-\x1f\x7f]")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DECIMAL_STRING = re.compile(r"^-?\d{1,20}(\.\d{1,18})?$")
# Matches an api_key value even when the JSON around it is broken or truncated mid-secret.
_API_KEY_VALUE = re.compile(rb'("api_key"\s*:\s*)"((?:[^"\\]|\\.)*)("?)')


def time_bounds_problem(timestamp_ms: int, now_ms: int, max_lateness_ms: int,
                        max_future_skew_ms: int) -> tuple[str, str] | None:
    """``(reason, detail)`` when an event at ``timestamp_ms`` (epoch ms, UTC) is outside the accepted window
    ``[now_ms - max_lateness_ms, now_ms + max_future_skew_ms]``, else None.

    Reasons: ``future_timestamp`` (beyond the clock-skew bound) and ``too_late`` (older than the lateness
    bound, so its hour is no longer updated). The worker and the collector apply this same rule with the same
    settings (``METERLINE_MAX_FUTURE_SKEW``, ``METERLINE_MAX_LATENESS``), so what the collector accepts the
    worker counts.
    """
    if timestamp_ms > now_ms + max_future_skew_ms:
        return "future_timestamp", (f"timestamp is {(timestamp_ms - now_ms) / 1000:.0f} s in the future; "
                                    f"at most {max_future_skew_ms / 1000:.0f} s of clock skew is accepted")
    if timestamp_ms < now_ms - max_lateness_ms:
        detail = (f"timestamp is {(now_ms - timestamp_ms) / 3_600_000:.1f} h old; events older than "
                  f"{max_lateness_ms / 3_600_000:.0f} h are not added to their hour any more")
        if timestamp_ms < 10**11:
            detail += " (it looks like epoch seconds: the contract wants epoch milliseconds)"
        return "too_late", detail
    return None


def hash_api_key(secret: str) -> str:
    """The stable id stored for a raw secret: its SHA-256 hex digest (LiteLLM's user_api_key_hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def redact(raw: bytes) -> bytes:
    """``raw`` with every api_key string value replaced by its hash, so a secret never leaves memory."""
    if b'"api_key"' not in raw:
        return raw

    def _hashed(match: re.Match[bytes]) -> bytes:
        secret = match.group(2).decode("utf-8", "replace")
        return match.group(1) + b'"sha256:' + hash_api_key(secret).encode() + b'"'

    return _API_KEY_VALUE.sub(_hashed, raw)


def _reason_for(error: msgspec.ValidationError) -> str:
    return "missing_field" if str(error).startswith("Object missing required field") else "invalid_field"


def _epoch_ms(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    return (value - _EPOCH) // _MILLISECOND


_MILLISECOND = _EPOCH.resolution * 1000


class ContractDecoder:
    """Turns message values into valid :class:`UsageEvent` objects and :class:`Rejection` records."""

    def __init__(self, max_batch_events: int = 1000) -> None:
        self._max_batch_events = max_batch_events
        self._batch = msgspec.json.Decoder(list[UsageEvent])
        self._single = msgspec.json.Decoder(UsageEvent)
        self._raw_items = msgspec.json.Decoder(list[msgspec.Raw])

    def decode(self, value: bytes | None, key: bytes | None = None) -> tuple[list[UsageEvent], list[Rejection]]:
        """Valid events (normalised) and rejections of one Kafka record value (``None`` for a tombstone).

        Never raises (for any :class:`Exception`): an error of any type while reading the message becomes a
        :class:`Rejection` whose detail names the exception class.
        """
        if value is None:
            return [], [Rejection("tombstone", "the record has a null value (a tombstone): no event", b"")]
        if not value.strip():
            return [], [Rejection("empty_message", "the record value is empty", value)]
        try:
            head = value.lstrip()[:1]
            if head == b"[":
                return self._decode_batch(value, key)
            if head == b"{":
                return self._decode_single(value, key)
            return [], [self._reject_message(value)]
        except Exception as error:  # the message's fault, whatever it is: see the module docstring
            return [], [rejection_for(error, value)]

    def _decode_single(self, value: bytes, key: bytes | None) -> tuple[list[UsageEvent], list[Rejection]]:
        try:
            event = self._single.decode(value)
        except Exception as error:
            return [], [rejection_for(error, value)]
        problem = _normalise(event, _key_text(key), _may_hold_controls(value))
        if problem is None:
            return [event], []
        return [], [Rejection(problem[0], problem[1], redact(value))]

    def _decode_batch(self, value: bytes, key: bytes | None) -> tuple[list[UsageEvent], list[Rejection]]:
        try:
            events = self._batch.decode(value)
        except (msgspec.ValidationError, UnicodeError):
            # Some items are bad: judge each one alone (locating items needs valid JSON structure only).
            return self._decode_items_one_by_one(value, key)
        except Exception as error:  # malformed or too deep: items cannot be located, the message goes whole
            return [], [rejection_for(error, value)]
        if not events or len(events) > self._max_batch_events:
            return [], [self._reject_batch_size(value, len(events))]
        key_text, controls = _key_text(key), _may_hold_controls(value)
        problems = [_normalise(event, key_text, controls) for event in events]
        if not any(problems):
            return events, []
        return self._split(events, problems, value)

    def _split(self, events, problems, value) -> tuple[list[UsageEvent], list[Rejection]]:
        raw_items = self._raw_items.decode(value)
        good: list[UsageEvent] = []
        bad: list[Rejection] = []
        for index, (event, problem) in enumerate(zip(events, problems)):
            if problem is None:
                good.append(event)
            else:
                bad.append(Rejection(problem[0], problem[1], redact(bytes(raw_items[index])), index))
        return good, bad

    def _decode_items_one_by_one(self, value: bytes, key: bytes | None) -> tuple[list[UsageEvent], list[Rejection]]:
        try:
            raw_items = self._raw_items.decode(value)
        except Exception as error:
            return [], [rejection_for(error, value)]
        if not raw_items or len(raw_items) > self._max_batch_events:
            return [], [self._reject_batch_size(value, len(raw_items))]
        key_text = _key_text(key)
        good: list[UsageEvent] = []
        bad: list[Rejection] = []
        for index, item in enumerate(raw_items):
            raw = bytes(item)
            try:
                event = self._single.decode(raw)
            except msgspec.ValidationError as error:
                reason = "not_an_object" if str(error).startswith("Expected `object`") else _reason_for(error)
                bad.append(Rejection(reason, str(error).replace(" - at `$`", ""), redact(raw), index))
                continue
            except Exception as error:
                bad.append(rejection_for(error, raw, index))
                continue
            problem = _normalise(event, key_text, _may_hold_controls(raw))
            if problem is None:
                good.append(event)
            else:
                bad.append(Rejection(problem[0], problem[1], redact(raw), index))
        return good, bad

    def _reject_batch_size(self, value: bytes, size: int) -> Rejection:
        if size == 0:
            return Rejection("empty_batch", "a batch must hold at least one event", redact(value))
        return Rejection(
            "batch_too_large",
            f"batch holds {size} events; at most {self._max_batch_events} are allowed",
            redact(value),
        )

    def _reject_message(self, value: bytes) -> Rejection:
        try:
            msgspec.json.decode(value)
        except Exception as error:
            return rejection_for(error, value)
        return Rejection("not_an_object", "a message must be an event object or a JSON array of them", redact(value))


def rejection_for(error: Exception, raw: bytes, index: int | None = None) -> Rejection:
    """The rejection of bytes that raised ``error`` while being read; the detail names the exception class.

    ``invalid_encoding``: not UTF-8 (JSON text is UTF-8, RFC 8259 section 8.1); ``too_deep``: nested deeper
    than the parser's recursion limit; ``invalid_json``: not JSON; ``missing_field`` / ``invalid_field``: JSON
    that breaks the contract; ``undecodable``: anything else a library raised on these bytes.
    """
    if isinstance(error, msgspec.ValidationError):
        reason = _reason_for(error)
    elif isinstance(error, UnicodeError):
        reason = "invalid_encoding"
    elif isinstance(error, RecursionError):
        reason = "too_deep"
    elif isinstance(error, msgspec.DecodeError):
        reason = "invalid_json"
    else:
        reason = "undecodable"
    detail = str(error) if isinstance(error, msgspec.MsgspecError) else f"{type(error).__name__}: {error}"
    return Rejection(reason, detail[:500], _redacted_or_empty(raw), index)


def _redacted_or_empty(raw: bytes) -> bytes:
    """``redact(raw)``; should redaction itself fail, no bytes at all rather than a possible secret."""
    try:
        return redact(raw)
    except Exception:
        return b""


def _may_hold_controls(raw: bytes) -> bool:
    """Whether decoded strings of ``raw`` can hold control characters: JSON carries them only escaped, and
    DEL raw. A cheap byte scan that spares the per-field check on almost every message."""
    return b"\\" in raw or b"\x7f" in raw


def _key_text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "replace")


def _normalise(event: UsageEvent, key: str | None, may_hold_controls: bool = True) -> tuple[str, str] | None:
    """Checks the rules msgspec cannot express and normalises the event in place.

    Returns (reason, detail) for an invalid event, None for a valid one. ``may_hold_controls=False`` (the
    message has no escape and no DEL byte) skips the control-character scan of the identifiers.
    """
    if may_hold_controls:
        for name in LABEL_FIELDS:
            text = getattr(event, name)
            if text and (found := _CONTROL.search(text)):
                return "invalid_field", f"`{name}` holds a control character (U+{ord(found.group()):04X})"
    secret = event.api_key
    if secret is not None:
        event.api_key = None
        if event.api_key_id is None:
            event.api_key_id = hash_api_key(secret)
    if event.api_key_id is None:
        return "missing_api_key", "one of `api_key_id` or `api_key` is required"
    # With a raw secret the id is derived here, so the producer's key cannot be compared with it.
    if key is not None and secret is None and key != event.api_key_id:
        return "key_mismatch", "the event's api_key_id differs from the message key"
    if event.cache_read_tokens + event.cache_write_tokens > event.input_tokens:
        return "inconsistent_tokens", "cache_read_tokens + cache_write_tokens exceed input_tokens (which include them)"
    if event.reasoning_tokens > event.output_tokens:
        return "inconsistent_tokens", "reasoning_tokens exceed output_tokens (which include them)"
    if event.gateway_cost_usd is not None and not _is_decimal_string(event.gateway_cost_usd):
        return "invalid_field", "gateway_cost_usd must be a decimal string such as \"0.001234\""
    if event.usage is not None and (problem := _normalise_usage(event)) is not None:
        return "inconsistent_tokens", problem
    event.timestamp = _epoch_ms(event.timestamp)
    return None


def unit_values(event: UsageEvent) -> dict[str, int]:
    """Every unit count of a valid event by genai-prices unit name (pipeline/units.py): the top-level token
    fields, the ``usage`` object, and ``requests`` (1)."""
    values = {unit: getattr(event, name) for name, unit in TOP_LEVEL.items()}
    if event.usage:
        values.update(event.usage)
    values[IMPLICIT] = 1
    return values


def _normalise_usage(event: UsageEvent) -> str | None:
    """Drops zero counts (absent means 0) and checks that no unit's parts exceed it (pipeline/units.py)."""
    usage = {name: count for name, count in event.usage.items() if count}  # type: ignore[union-attr]
    event.usage = usage or None
    if not usage:
        return None
    return inconsistency(unit_values(event))


def _is_decimal_string(text: str) -> bool:
    if not _DECIMAL_STRING.match(text):
        return False
    try:
        return Decimal(text) >= 0
    except InvalidOperation:
        return False
