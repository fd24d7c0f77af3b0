"""The usage units an event may report, and which units are parts of which: declared once, here.

The vocabulary is genai-prices' (its unit registry, ``genai_prices.units``): every unit it can price has a
name (its usage key), a size it is priced per (1M tokens, 1K searches, 1 hour of audio) and *dimensions*
(family, direction, modality, token type, cache lifetime, ...). A unit is a **part** of another when its
dimensions include all of the other's: ``cache_write_1h_tokens`` (input, cache write, 1 h) is part of
``cache_write_tokens`` (input, cache write), which is part of ``input_tokens`` (input). Two parts of one whole
that set the same dimension to different values never overlap (``input_audio_tokens`` and
``input_image_tokens``), so together they cannot exceed it; parts that differ in different dimensions may
overlap, and their overlap is a unit of its own (``cache_audio_read_tokens`` is the overlap of
``input_audio_tokens`` and ``cache_read_tokens``).

From this one table come: the contract's consistency rule (:func:`inconsistency`, the ``inconsistent_tokens``
reason), the ``usage`` object of the JSON Schema and the table in docs/units.md (:func:`usage_schema`,
:func:`docs_table`; ``python -m pipeline.units`` prints both), and the leaf decomposition pricing applies
(pipeline/metering/pricing.py). tests/unit/test_units.py checks the table against genai-prices' registry, so a
genai-prices upgrade that adds or reshapes a unit fails loudly instead of being priced wrong.

Where an event carries a unit: the five v1 token fields are top-level (``reasoning_tokens`` is genai-prices'
``output_reasoning_tokens``), ``requests`` is implicit (one per event), every other unit goes in the event's
optional ``usage`` object under its genai-prices name. A unit that is not reported is 0.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType


@dataclass(frozen=True)
class Unit:
    """One usage unit: ``name`` is genai-prices' usage key; genai-prices' price key prices ``per`` of them."""

    name: str
    counts: str  # what one unit is: "token", "character", "message", "second", "pixel", "page", "search", ...
    per: int
    dimensions: Mapping[str, str]
    price_key: str  # genai-prices' key of its price (USD per ``per`` units), also the overrides file's

    def is_part_of(self, other: Unit) -> bool:
        """Strictly part of ``other`` (its dimensions include all of ``other``'s, and more)."""
        return self is not other and other.dimensions.items() <= self.dimensions.items()

    @property
    def field(self) -> str:
        """Where an event carries it: the top-level field, ``usage.<name>``, or ``""`` (requests: implicit)."""
        if self.name == IMPLICIT:
            return ""
        return _FIELD_OF.get(self.name, f"usage.{self.name}")

    @property
    def direction(self) -> str:
        """``input``, ``output`` or ``""`` (no direction: searches, requests, audio seconds overall)."""
        return self.dimensions.get("direction", "")


def _unit(name: str, counts: str, per: int, price_key: str = "", **dimensions: str) -> Unit:
    if not price_key:  # genai-prices' usual naming: per 1M tokens "_mtok", per 1K "_kcount"
        price_key = name.removesuffix("_tokens") + "_mtok" if counts == "token" else name + "_kcount"
    return Unit(name, counts, per, MappingProxyType(dimensions), price_key)


_M = 1_000_000


def _tokens(name: str, direction: str, **more: str) -> Unit:
    return _unit(name, "token", _M, family="tokens", direction=direction, **more)


def _cache(name: str, modality: str | None, token_type: str, ttl: str | None = None) -> Unit:
    more = {"modality": modality} if modality else {}
    more["token_type"] = token_type
    if ttl:
        more["cache_ttl"] = ttl
    return _tokens(name, "input", **more)


# genai-prices 0.2.3's registry, in its order (genai_prices/data_units.py). Dimension names and values are
# genai-prices' own.
UNITS: tuple[Unit, ...] = (
    _tokens("input_tokens", "input"),
    _tokens("output_tokens", "output"),
    _cache("cache_read_tokens", None, "cache_read"),
    _cache("cache_write_tokens", None, "cache_write"),
    _cache("cache_write_5m_tokens", None, "cache_write", "5m"),
    _cache("cache_write_1h_tokens", None, "cache_write", "1h"),
    *(unit for modality in ("text", "audio", "image", "video") for unit in (
        _tokens(f"input_{modality}_tokens", "input", modality=modality),
        _tokens(f"output_{modality}_tokens", "output", modality=modality),
        _cache(f"cache_{modality}_read_tokens", modality, "cache_read"),
        _cache(f"cache_{modality}_write_tokens", modality, "cache_write"),
        _cache(f"cache_{modality}_write_5m_tokens", modality, "cache_write", "5m"),
        _cache(f"cache_{modality}_write_1h_tokens", modality, "cache_write", "1h"),
    )),
    _tokens("input_tool_tokens", "input", token_type="tool"),
    *(_tokens(f"input_{m}_tool_tokens", "input", modality=m, token_type="tool") for m in ("text", "audio", "image", "video")),
    _tokens("output_reasoning_tokens", "output", token_type="reasoning"),
    *(_tokens(f"output_{m}_reasoning_tokens", "output", modality=m, token_type="reasoning")
      for m in ("text", "audio", "image", "video")),
    _tokens("output_citation_tokens", "output", token_type="citation"),
    *(_tokens(f"output_{m}_citation_tokens", "output", modality=m, token_type="citation")
      for m in ("text", "audio", "image", "video")),
    _unit("input_characters", "character", _M, "input_mchars", family="characters", direction="input"),
    _unit("input_text_messages", "message", 1000, family="messages", direction="input", modality="text"),
    _unit("audio_seconds", "second", 3600, "audio_hours", family="durations", modality="audio"),
    _unit("input_audio_seconds", "second", 3600, "input_audio_hours", family="durations", direction="input",
          modality="audio"),
    _unit("output_audio_seconds", "second", 3600, "output_audio_hours", family="durations", direction="output",
          modality="audio"),
    _unit("input_pixels", "pixel", 1_000_000_000, "input_gpixels", family="pixels", direction="input"),
    _unit("input_document_pages", "page", 1000, "input_document_kpages", family="document_pages",
          direction="input"),
    _unit("input_annotated_document_pages", "page", 1000, "input_annotated_document_kpages",
          family="document_pages", direction="input", page_type="annotated"),
    _unit("rerank_searches", "search", 1000, family="rerank"),
    _unit("web_searches", "search", 1000, family="tool_calls", tool_type="web_search"),
    _unit("social_searches", "search", 1000, family="tool_calls", tool_type="social_search"),
    _unit("storage_searches", "search", 1000, family="tool_calls", tool_type="storage_search"),
    _unit("code_executions", "execution", 1000, family="tool_calls", tool_type="code_execution"),
    _unit("requests", "request", 1000, family="requests"),
)
BY_NAME: Mapping[str, Unit] = MappingProxyType({unit.name: unit for unit in UNITS})

# The v1 top-level token fields and the unit each one is (contract field -> unit name).
TOP_LEVEL = MappingProxyType({"input_tokens": "input_tokens", "output_tokens": "output_tokens",
                              "cache_read_tokens": "cache_read_tokens", "cache_write_tokens": "cache_write_tokens",
                              "reasoning_tokens": "output_reasoning_tokens"})
IMPLICIT = "requests"  # one per event; never reported
# The units an event's ``usage`` object may hold, in registry order.
USAGE_UNITS: tuple[str, ...] = tuple(u.name for u in UNITS if u.name not in TOP_LEVEL.values() and u.name != IMPLICIT)
_FIELD_OF = {unit: f for f, unit in TOP_LEVEL.items()}


@dataclass(frozen=True)
class Hierarchy:
    """Part-of relations derived from the dimensions (computed once, at import)."""

    wholes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # unit -> every unit it is part of
    parents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # unit -> the wholes directly above it
    parts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # unit -> every unit that is part of it

    @classmethod
    def of(cls, units: tuple[Unit, ...]) -> Hierarchy:
        wholes = {u.name: tuple(w.name for w in units if u.is_part_of(w)) for u in units}
        parents = {name: tuple(w for w in above if not any(w in wholes[o] for o in above)) for name, above in wholes.items()}
        parts = {u.name: tuple(p.name for p in units if p.is_part_of(u)) for u in units}
        return cls(MappingProxyType(wholes), MappingProxyType(parents), MappingProxyType(parts))

    @cached_property
    def disjoint_groups(self) -> Mapping[str, tuple[tuple[str, ...], ...]]:
        """unit -> groups of its direct parts that never overlap (same added dimension, different values)."""
        groups: dict[str, tuple[tuple[str, ...], ...]] = {}
        for name in self.parts:
            whole = BY_NAME[name].dimensions
            by_dimension: dict[str, list[str]] = {}
            for part in self.parts[name]:
                added = BY_NAME[part].dimensions.keys() - whole.keys()
                if len(added) == 1:
                    by_dimension.setdefault(next(iter(added)), []).append(part)
            groups[name] = tuple(tuple(group) for group in by_dimension.values() if len(group) > 1)
        return MappingProxyType(groups)

    def join(self, a: str, b: str) -> str | None:
        """The unit that is exactly the overlap of ``a`` and ``b`` (None when they cannot overlap)."""
        da, db = BY_NAME[a].dimensions, BY_NAME[b].dimensions
        if any(db.get(key, value) != value for key, value in da.items()):
            return None
        return _BY_DIMENSIONS.get(frozenset(da.items() | db.items()))


_BY_DIMENSIONS = {frozenset(u.dimensions.items()): u.name for u in UNITS}
HIERARCHY = Hierarchy.of(UNITS)


class Decomposition:
    """The leaf decomposition of reported values over a set of units closed under wholes and overlaps
    (genai-prices' ``compute_leaf_values``): each unit's *leaf* is its value less the leaves of its parts in
    the set, i.e. the units counted by it and by none of its parts. Leaves are what a price applies to:
    a cache-read audio token is priced once, at the most specific price the sheet has for it.

    ``order`` lists the set's units most specific first; ``parts_in[i]`` the positions of unit i's parts.
    """

    __slots__ = ("order", "parts_in")

    def __init__(self, names: frozenset[str]) -> None:
        self.order = tuple(sorted(names, key=lambda n: (-len(BY_NAME[n].dimensions), n)))
        position = {name: i for i, name in enumerate(self.order)}
        self.parts_in = tuple(tuple(position[p] for p in HIERARCHY.parts[name] if p in position)
                              for name in self.order)

    def leaves(self, values: Mapping[str, int]) -> list[int]:
        """Leaf value of each unit of ``order`` (absent values are 0)."""
        leaves: list[int] = []
        get = values.get
        for name, parts in zip(self.order, self.parts_in):
            leaves.append(get(name, 0) - sum(leaves[i] for i in parts))
        return leaves


def closure(names: set[str] | frozenset[str]) -> frozenset[str]:
    """``names`` with every unit they are part of and every overlap of two of them, until nothing is added."""
    found = set(names)
    for name in names:
        found.update(HIERARCHY.wholes[name])
    while True:
        ordered = sorted(found)
        added = {j for i, a in enumerate(ordered) for b in ordered[i + 1:]
                 if (j := HIERARCHY.join(a, b)) is not None and j not in found}
        if not added:
            return frozenset(found)
        found |= added


_PLANS: dict[frozenset[str], Decomposition] = {}
_MAX_PLANS = 4096


def decomposition(reported: frozenset[str]) -> Decomposition:
    """The decomposition over the closure of ``reported`` (cached: events repeat the same few shapes)."""
    plan = _PLANS.get(reported)
    if plan is None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[reported] = Decomposition(closure(reported))
    return plan


def inconsistency(values: Mapping[str, int]) -> str | None:
    """Why these reported values (unit name -> count; absent = 0) cannot describe one request, or None.

    The rule: every leaf of the decomposition over the reported units (with their wholes and overlaps) is
    >= 0, i.e. the parts of a unit never exceed it, counting each overlap once. It is exactly what
    genai-prices needs to price the values under *any* price sheet (it raises on a negative leaf), and
    it names the unit that is exceeded.
    """
    reported = frozenset(name for name, value in values.items() if value)
    if not reported:
        return None
    plan = decomposition(reported)
    for name, leaf in zip(plan.order, plan.leaves(values)):
        if leaf < 0:
            return _explain(name, values)
    return None


def _explain(name: str, values: Mapping[str, int]) -> str:
    total = values.get(name, 0)
    parts = [p for p in HIERARCHY.parts[name] if values.get(p)]
    for part in parts:
        if values[part] > total:
            return (f"{_field(part)} ({values[part]}) exceeds {_field(name)} ({total}), which includes it")
    outermost = [p for p in parts if not any(p in HIERARCHY.parts[q] for q in parts)]
    shown = ", ".join(f"{_field(p)} {values[p]}" for p in outermost)
    return (f"the parts of {_field(name)} ({total}) exceed it: {shown} (overlaps counted once; "
            "an overlap that is not reported is 0)")


def _field(name: str) -> str:
    return BY_NAME[name].field or name


# ---- derived documentation ------------------------------------------------------------------------------

def part_of_text(name: str) -> str:
    """``Part of cache_write_tokens and input_text_tokens.`` (the direct wholes), or ``""``."""
    parents = [_field(p) for p in HIERARCHY.parents[name]]
    return f"Part of {' and '.join(parents)}." if parents else ""


def disjoint_text(name: str) -> str:
    groups = HIERARCHY.disjoint_groups[name]
    if not groups:
        return ""
    listed = "; ".join(" + ".join(_field(p) for p in group) for group in groups)
    return f"Together at most {_field(name)}: {listed}."


def description(name: str) -> str:
    unit = BY_NAME[name]
    per = {1_000_000: "1M", 1000: "1K", 3600: "hour (3600)", 1_000_000_000: "1G"}.get(unit.per, str(unit.per))
    text = f"{unit.counts.capitalize()}s; genai-prices prices them per {per}."
    return " ".join(t for t in (text, part_of_text(name), disjoint_text(name)) if t)


def usage_schema() -> dict:
    """The JSON Schema of the event's ``usage`` object (written into schemas/usage-event.v1.schema.json)."""
    return {
        "type": "object",
        "description": ("Usage units beyond the top-level token fields, under genai-prices' unit names. Each is a "
                        "count (integer, 0..1e12); absent means 0. A unit is part of every unit named in its "
                        "'Part of' (a part never exceeds its whole, and parts of one whole together never exceed "
                        "it, overlaps counted once: reason inconsistent_tokens). Unknown names are rejected "
                        "(invalid_field): a misspelt unit would otherwise go unbilled."),
        "additionalProperties": False,
        "properties": {name: {"$ref": "#/$defs/tokens", "description": description(name)} for name in USAGE_UNITS},
    }


def docs_table() -> str:
    """The Markdown table of docs/units.md: every unit, where an event carries it, what it is part of."""
    rows = ["| unit (genai-prices name) | event field | counts | part of | parts that never overlap |",
            "|---|---|---|---|---|"]
    for unit in UNITS:
        field_text = f"`{unit.field}`" if unit.field else "implicit (1 per event)"
        parents = ", ".join(f"`{p}`" for p in HIERARCHY.parents[unit.name]) or "—"
        groups = "; ".join(" + ".join(f"`{p}`" for p in g) for g in HIERARCHY.disjoint_groups[unit.name]) or "—"
        rows.append(f"| `{unit.name}` | {field_text} | {unit.counts}s | {parents} | {groups} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m pipeline.units [schema|docs]
    import json

    print(json.dumps(usage_schema(), indent=2) if sys.argv[1:] == ["schema"] else docs_table())
