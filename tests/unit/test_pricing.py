"""pipeline.metering.pricing: every unit genai-prices prices, priced exactly as genai-prices does, and fast.

The truth is genai-prices' own ``calc_price`` (tests/support/units.py), called per event; events go through the
contract decoder and the group path (Counts, Rate.price, Rate.price_apart) exactly as in the worker.
"""

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import genai_prices
import msgspec
import pytest
from genai_prices import Usage, data
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import (ClauseAnd, ClauseContains, ClauseEndsWith, ClauseEquals, ClauseOr, ClauseStartsWith,
                                ModelInfo, ModelPrice, Provider, StartDateConstraint, TieredPrices,
                                TimeOfDateConstraint)

from pipeline.contract import ContractDecoder, unit_values
from pipeline.measures import REMAINDERS, Counts, costs_by_unit
from pipeline.metering.pricing import (PriceBook, PriceOverride, PricingError, Rate, TieredRates, load_overrides,
                                       quantize_usd, snapshot_rates)
from pipeline.units import BY_NAME, USAGE_UNITS
from support.units import consistent_values, event_fields, genai_price

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VERSION = genai_prices.__version__
# Plain timestamps away from any boundary, before, between and after the snapshot's price changes.
PLAIN_TIMES = [datetime(2025, 1, 15, 9, 30, tzinfo=UTC), datetime(2026, 6, 1, 12, 0, 0, 1000, tzinfo=UTC),
               datetime(2026, 11, 25, 3, 7, 42, tzinfo=UTC), datetime(2027, 3, 1, 23, 59, 59, 999000, tzinfo=UTC)]
# Sheets whose price of one token or one request needs more than 24 decimal places: unpriced (pinned, so a
# genai-prices bump that adds one is noticed: it would need an override or a wider scale).
NOT_EXACT_AT_STORED_SCALE: set[str] = set()
DECODER = ContractDecoder()
COMPARISONS = Counter()  # per provider: how many events were priced both ways


def ms(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


def our_price(book: PriceBook, model: str, provider: str | None, ts_ms: int, values: dict[str, int],
              tier: str = "") -> tuple[Decimal, Decimal] | None:
    """meterline's (total, output) price of one event with these unit values, through the worker's path."""
    fields = {"request_id": "r", "api_key_id": "k", "model": model, "timestamp": ts_ms, **event_fields(values)}
    if tier:
        fields["service_tier"] = tier
    [event], rejections = DECODER.decode(msgspec.json.encode(fields))
    assert rejections == []
    rate = book.rate_for(model, provider, ts_ms, event.input_tokens, tier)
    if rate is None:
        return None
    counts = Counts()
    counts.add(event)
    if event.usage and rate.apart and (apart := rate.price_apart(unit_values(event))):
        counts.add_priced_apart(apart)
    cost = rate.price(counts)
    assert not cost.by_unit.keys() & REMAINDERS, rate.version  # derived by readers, never stored
    assert sum(cost.all_units().values()) == cost.total_units, rate.version
    assert all(value > 0 for value in cost.all_units().values()), rate.version  # leaves are never negative
    return Decimal(cost.total_units).scaleb(-24), Decimal(cost.output_units).scaleb(-24)


def sheets(model: ModelInfo) -> list[tuple[object, ModelPrice]]:
    if isinstance(model.prices, ModelPrice):
        return [(None, model.prices)]
    return [(c.constraint, c.prices) for c in model.prices]


def all_constraints(model: ModelInfo) -> list[object]:
    return [c for c, _ in sheets(model)] + [v.constraint for v in model.price_variants or ()]


def boundary_times(model: ModelInfo) -> Iterator[datetime]:
    """Each constraint boundary of the model (prices and price variants), and the last millisecond before it."""
    for constraint in all_constraints(model):
        if isinstance(constraint, StartDateConstraint):
            edges = [datetime.combine(constraint.start_date, time(0), UTC)]
        elif isinstance(constraint, TimeOfDateConstraint):
            edges = [datetime.combine(day, t, t.tzinfo or UTC) for day in (date(2026, 2, 10), date(2026, 11, 25))
                     for t in (constraint.start_time, constraint.end_time)]
        else:
            edges = []
        for edge in edges:
            yield from (edge, edge - timedelta(milliseconds=1))


def priced_units(model: ModelInfo) -> set[str]:
    """Every unit any sheet or price variant of the model prices."""
    keys = set()
    for price in [s for _, s in sheets(model)] + [v.prices for v in model.price_variants or ()]:
        keys |= {BY_NAME_OF_KEY[k] for k, v in vars(price).items() if v is not None}
    return keys - {"requests"}


BY_NAME_OF_KEY = {unit.price_key: unit.name for unit in BY_NAME.values()}


def tier_starts(model: ModelInfo) -> set[int]:
    return {tier.start for _, sheet in sheets(model) for price in vars(sheet).values()
            if isinstance(price, TieredPrices) for tier in price.tiers}


def service_tiers(model: ModelInfo) -> list[str]:
    """The event service tiers that select this model's genai-prices price variants."""
    tiers = set()
    for variant in model.price_variants or ():
        if variant.when.get("processing") == "batch":
            tiers.add("batch")
        elif "service_tier" in variant.when:
            tiers.add(variant.when["service_tier"])
    return sorted(tiers)


def clause_strings(clause: object) -> Iterator[str]:
    if isinstance(clause, (ClauseOr, ClauseAnd)):
        for inner in clause.or_ if isinstance(clause, ClauseOr) else clause.and_:
            yield from clause_strings(inner)
    for kind, attr in ((ClauseEquals, "equals"), (ClauseStartsWith, "starts_with"), (ClauseContains, "contains"),
                       (ClauseEndsWith, "ends_with")):
        if isinstance(clause, kind):
            yield getattr(clause, attr)


def model_ref(provider: Provider, model: ModelInfo) -> str:
    """A model name that genai-prices resolves to this very model (its id does not always match itself)."""
    for ref in [model.id, *clause_strings(model.match)]:
        try:
            if get_snapshot().find_provider_model(ref, None, provider.id, None)[1] is model:
                return ref
        except LookupError:
            pass
    return model.id


def grid(rng: random.Random, model: ModelInfo) -> Iterator[tuple[datetime, str, dict[str, int]]]:
    """(time, service tier, values) cases that exercise every unit the model prices, at every time its
    prices change, in every tier band and service tier."""
    units = priced_units(model)
    times = [*PLAIN_TIMES, *boundary_times(model)]
    for when in times:
        yield when, "", consistent_values(rng, set())  # the five top-level units only
        yield when, "", consistent_values(rng, units)  # every unit the model prices, at once
    for unit in sorted(units - {"input_tokens", "output_tokens"}):  # each unit alone (with its wholes)
        yield rng.choice(times), "", consistent_values(rng, {unit})
    for start in tier_starts(model):
        for delta in (-1, 0, 1):
            yield PLAIN_TIMES[2], "", consistent_values(rng, units, input_tokens=start + delta, big=False)
    for tier in service_tiers(model):
        for when in times:
            yield when, tier, consistent_values(rng, units)


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


@pytest.mark.parametrize("provider", data.providers, ids=lambda p: p.id)
def test_every_model_matches_genai_prices_exactly_in_every_unit(book: PriceBook, provider: Provider):
    rng = random.Random(f"every-model-{provider.id}")
    mismatches = []
    for model in provider.models:
        ref = model_ref(provider, model)
        for when, tier, values in grid(rng, model):
            expected = genai_price(values, ref, provider.id, ms(when), tier)
            if our_price(book, ref, provider.id, ms(when), values, tier) != expected:
                mismatches.append((ref, when, tier, values, expected))
            COMPARISONS[provider.id] += 1
        when, values = PLAIN_TIMES[1], consistent_values(rng, priced_units(model))  # provider inferred
        expected = genai_price(values, ref, None, ms(when))
        if expected is None and (found := book.resolve(ref, None)) is not None:
            # genai-prices cannot infer the provider of e.g. "deepseek/deepseek-v4-flash-latest"; meterline
            # reads the prefix: then the price must be genai-prices' price of the model it resolved to
            expected = genai_price(values, model_ref(found.provider, found.model), found.provider.id, ms(when))
        if our_price(book, ref, None, ms(when), values) != expected:
            mismatches.append((ref, None, when, values))
        COMPARISONS[provider.id] += 1
    assert mismatches == []


def test_the_comparison_covers_every_model_and_unit_genai_prices_prices():
    """Not a pricing check: proof that the grid above reaches every priced unit of the snapshot."""
    rng = random.Random(0)
    reached = set()
    for provider in data.providers:
        for model in provider.models:
            for _, _, values in grid(rng, model):
                reached |= {name for name, value in values.items() if value}
    priced_anywhere = {name for p in data.providers for m in p.models for name in priced_units(m)}
    assert priced_anywhere <= reached
    assert len(priced_anywhere) >= 20  # audio, image, video, cache TTLs, searches, pages, seconds, ...


def test_summed_events_that_share_a_rate_cost_the_sum_of_their_prices(book: PriceBook):
    rng = random.Random("linearity")
    candidates = [(p.id, model_ref(p, m), sorted(tier_starts(m)), priced_units(m))
                  for p in data.providers for m in p.models]
    chosen = [c for c in candidates if c[1] in ("sonar", "gemini-2.5-pro", "claude-sonnet-4-5", "gpt-audio",
                                                  "whisper-large-v3", "gpt-4o-realtime-preview")]
    day = ms(datetime(2026, 11, 25, tzinfo=UTC))
    for provider, ref, starts, units in chosen + rng.sample(candidates, 80):
        groups: dict[Rate, Counts] = defaultdict(Counts)
        expected: dict[Rate, Decimal] = defaultdict(Decimal)
        for index in range(40):
            ts_ms = day + rng.randrange(86_400_000)
            target = rng.choice(starts) + rng.choice((-1, 1)) if starts and rng.random() < 0.5 else None
            values = consistent_values(rng, units if index % 2 else set(), input_tokens=target, big=False)
            fields = {"request_id": f"r{index}", "api_key_id": "k", "model": ref, "timestamp": ts_ms,
                      **event_fields(values)}
            [event], _ = DECODER.decode(msgspec.json.encode(fields))
            rate = book.rate_for(ref, provider, ts_ms, event.input_tokens)
            if rate is not None:
                groups[rate].add(event)
                if event.usage and rate.apart and (apart := rate.price_apart(unit_values(event))):
                    groups[rate].add_priced_apart(apart)
                expected[rate] += genai_price(values, ref, provider, ts_ms)[0]
        for rate, counts in groups.items():
            assert Decimal(rate.price(counts).total_units).scaleb(-24) == expected[rate], rate.version


# --- the cases, by hand ------------------------------------------------------------------------------

WHEN = ms(datetime(2026, 11, 25, 12, tzinfo=UTC))


def total(book: PriceBook, model: str, provider: str | None, **fields) -> Decimal | None:
    values = {"input_tokens": fields.pop("input_tokens"), "output_tokens": fields.pop("output_tokens"), **fields}
    priced = our_price(book, model, provider, WHEN, values)
    return None if priced is None else priced[0]


def test_one_hour_cache_writes_are_priced_at_their_own_rate(book: PriceBook):
    # 10 uncached input + 100,000 cache writes, all 1 h ($6/M, 2x input), 100 output ($15/M):
    # 10 x 3e-6 + 100,000 x 6e-6 + 100 x 15e-6 = 0.00003 + 0.6 + 0.0015
    assert total(book, "claude-sonnet-4-5", "anthropic", input_tokens=100_010, cache_write_tokens=100_000,
                 cache_write_1h_tokens=100_000, output_tokens=100) == Decimal("0.60153")
    # reported as plain cache writes, they are 5-minute writes ($3.75/M): what meterline used to charge
    assert total(book, "claude-sonnet-4-5", "anthropic", input_tokens=100_010, cache_write_tokens=100_000,
                 output_tokens=100) == Decimal("0.37653")


def test_audio_tokens_are_priced_at_audio_rates(book: PriceBook):
    # gpt-audio: text $2.5/M in, $10/M out; audio $32/M in, $64/M out.
    # 200 x 2.5e-6 + 800 x 32e-6 + 100 x 10e-6 + 400 x 64e-6 = 0.0005 + 0.0256 + 0.001 + 0.0256
    assert total(book, "gpt-audio", "openai", input_tokens=1000, input_audio_tokens=800, output_tokens=500,
                 output_audio_tokens=400) == Decimal("0.0527")
    assert genai_price({"input_tokens": 1000, "input_audio_tokens": 800, "output_tokens": 500,
                        "output_audio_tokens": 400}, "gpt-audio", "openai", WHEN)[0] == Decimal("0.0527")


@pytest.mark.parametrize(("model", "provider", "expected"), [
    ("openai/gpt-4o", "openai", "12.5"), ("openai/gpt-4o", None, "12.5"), ("OpenAI/GPT-4o", "OpenAI", "12.5"),
    ("anthropic/claude-sonnet-4-5", "anthropic", "28.5"),  # 1M input: the >200k tier, $6 + $22.50
    ("anthropic/claude-sonnet-4-5", None, "28.5"), ("gemini/gemini-2.5-pro", None, "17.5"),  # >200k: $2.50 + $15
    # LiteLLM's azure/ and vertex_ai/ routes (Vertex ids carry an @version): genai-prices' azure and google
    # sheets, which calc_price gives for the bare ids with those providers (it resolves neither prefixed id)
    ("azure/gpt-4o", None, "12.5"), ("AZURE/GPT-4o", "azure", "12.5"),
    ("vertex_ai/claude-sonnet-4-5@20250929", None, "28.5"), ("vertex_ai/gemini-2.5-pro", "vertex_ai", "17.5"),
])
def test_provider_prefixes_and_case_are_resolved(book: PriceBook, model: str, provider: str | None, expected: str):
    assert total(book, model, provider, input_tokens=1_000_000, output_tokens=1_000_000) == Decimal(expected)


@pytest.mark.parametrize("model", ["us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                                   "anthropic.claude-sonnet-4-5-20250929-v1:0",
                                   "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                                   "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"])
def test_bedrock_regional_ids_are_priced_as_bedrock_regional(book: PriceBook, model: str):
    rate = book.rate_for(model, None, WHEN, 1000)
    assert rate is not None and rate.version.startswith(
        f"genai-prices {VERSION} aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0")
    expected = genai_price({"input_tokens": 1000, "output_tokens": 100},
                           "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", WHEN)
    assert expected is not None
    assert our_price(book, model, None, WHEN, {"input_tokens": 1000, "output_tokens": 100}) == expected


def test_bedrock_global_ids_are_priced_as_bedrock_global(book: PriceBook):
    rate = book.rate_for("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", WHEN, 1000)
    assert rate is not None and "aws/global.anthropic.claude-sonnet-4-5-20250929-v1:0" in rate.version


def test_an_operators_alias_prices_a_deployment_name(tmp_path: Path):
    assert PriceBook().rate_for("my-gpt4o-deployment", "azure", WHEN, 10) is None
    book = PriceBook.from_file(write(tmp_path, '[alias.azure]\n"my-gpt4o-deployment" = "openai/gpt-4o"\n'))
    assert total(book, "my-gpt4o-deployment", "azure", input_tokens=1_000_000, output_tokens=1_000_000) == \
        Decimal("12.5")
    assert book.rate_for("my-gpt4o-deployment", "openai", WHEN, 10) is None  # scoped to azure
    anywhere = PriceBook.from_file(write(tmp_path, '[alias]\n"My-GPT4o-Deployment" = "openai/gpt-4o"\n'))
    assert anywhere.rate_for("my-gpt4o-deployment", "my-gateway", WHEN, 10).version == \
        f"genai-prices {VERSION} openai/gpt-4o"


def test_an_alias_may_name_an_override_model(tmp_path: Path):
    book = PriceBook.from_file(write(tmp_path, ACME + '\n[alias]\n"acme-prod-eu" = "acme-large"\n'))
    rate = book.rate_for("acme-prod-eu", None, ms(datetime(2026, 2, 1, tzinfo=UTC)), 10)
    assert rate is not None and rate.version == "override acme-large 2026-01-01"


# --- lookup rules --------------------------------------------------------------------------------------------

def test_unknown_model_is_unpriced(book: PriceBook):
    assert book.rate_for("no-such-model-anywhere", None, ms(PLAIN_TIMES[1]), 10) is None
    assert book.rate_for("no-such-model-anywhere", "openai", ms(PLAIN_TIMES[1]), 10) is None
    assert book.rate_for("no-such-model-anywhere", "my-gateway", ms(PLAIN_TIMES[1]), 10) is None


def test_known_provider_without_the_model_is_unpriced(book: PriceBook):
    # genai-prices raises LookupError here; pricing it with another provider would be a guess.
    assert genai_price({"input_tokens": 10, "output_tokens": 1}, "gpt-4o", "anthropic", ms(PLAIN_TIMES[1])) is None
    assert book.rate_for("gpt-4o", "anthropic", ms(PLAIN_TIMES[1]), 10) is None


def test_unknown_provider_falls_back_to_the_model_alone(book: PriceBook):
    when = ms(PLAIN_TIMES[1])
    rate = book.rate_for("gpt-4o", "my-gateway", when, 10)
    assert rate is not None and rate is book.rate_for("gpt-4o", None, when, 10)
    assert rate.version == f"genai-prices {VERSION} openai/gpt-4o"


def test_provider_specific_prices_are_used_when_the_provider_is_given(book: PriceBook):
    when, values = ms(PLAIN_TIMES[1]), {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    cerebras = book.rate_for("gpt-oss-120b", "cerebras", when, 1_000_000)
    openai = book.rate_for("gpt-oss-120b", None, when, 1_000_000)
    assert cerebras.version.endswith("cerebras/gpt-oss-120b") and openai.version.endswith("openai/gpt-oss-120b")
    assert our_price(book, "gpt-oss-120b", "cerebras", when, values) == genai_price(values, "gpt-oss-120b",
                                                                                     "cerebras", when)
    assert our_price(book, "gpt-oss-120b", "cerebras", when, values) != our_price(book, "gpt-oss-120b", None,
                                                                                   when, values)


def test_a_fallback_provider_shares_the_rate_of_the_price_owner(book: PriceBook):
    # azure falls back to openai's list for gpt-4o: the same sheet, the same Rate object.
    when = ms(PLAIN_TIMES[1])
    assert book.rate_for("gpt-4o", "azure", when, 10) is book.rate_for("gpt-4o", "openai", when, 10)


def test_request_fees_count_on_the_input_side(book: PriceBook):
    # genai-prices puts per-request fees in total_price only (the unit has no direction).
    when = ms(PLAIN_TIMES[1])
    calc = genai_prices.calc_price(Usage(), "sonar", provider_id="perplexity",
                                   genai_request_timestamp=EPOCH + timedelta(milliseconds=when))
    assert (calc.input_price, calc.output_price, calc.total_price) == (0, 0, Decimal("0.012"))
    rate = book.rate_for("sonar", "perplexity", when, 0)
    assert rate is not None and rate.cost(3, 0, 0, 0, 0, 0) == (Decimal("0.036"), 0)


def test_reasoning_and_cache_tokens_follow_genai_prices_decomposition(book: PriceBook):
    when = ms(PLAIN_TIMES[1])
    deep = book.rate_for("sonar-deep-research", "perplexity", when, 0)  # prices reasoning on its own
    assert deep is not None and deep.cost(1, 0, 0, 0, 100, 40)[1] == 60 * Decimal("8e-6") + 40 * Decimal("3e-6")
    sonar = book.rate_for("sonar", "perplexity", when, 0)  # no cache price: cached tokens are input tokens
    assert sonar is not None and sonar.cost(1, 100, 30, 20, 0, 0)[0] == 100 * Decimal("1e-6") + Decimal("0.012")
    gpt = book.rate_for("gpt-4o", "openai", when, 100)  # reasoning without its own price: an output token
    assert gpt is not None and gpt.cost(1, 100, 40, 0, 10, 7) == (
        60 * Decimal("2.5e-6") + 40 * Decimal("1.25e-6"), 10 * Decimal("10e-6"))


def test_costs_by_unit_are_leaf_costs_and_add_up(book: PriceBook):
    rate = book.rate_for("claude-sonnet-4-5", "anthropic", WHEN, 1000)
    counts = Counts()
    counts.requests, counts.input_tokens, counts.output_tokens = 2, 1000, 50
    counts.cache_read_tokens, counts.cache_write_tokens = 300, 200
    counts.add_units({"cache_write_1h_tokens": 150, "web_searches": 3})
    cost = rate.price(counts)
    assert cost.all_units() == {"input_tokens": 500 * 3 * 10**18, "cache_read_tokens": 300 * 3 * 10**17,
                                "cache_write_tokens": 50 * 375 * 10**16, "cache_write_1h_tokens": 150 * 6 * 10**18,
                                "output_tokens": 50 * 15 * 10**18, "web_searches": 3 * 10**22}
    assert sum(cost.all_units().values()) == cost.total_units and cost.output_units == 50 * 15 * 10**18
    assert cost.by_unit.keys() == cost.all_units().keys() - {"input_tokens", "output_tokens"}  # what is stored


def plain_counts(requests: int, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
                 cache_write_tokens: int = 0, reasoning_tokens: int = 0) -> Counts:
    counts = Counts()
    counts.requests, counts.input_tokens, counts.output_tokens = requests, input_tokens, output_tokens
    counts.cache_read_tokens, counts.cache_write_tokens = cache_read_tokens, cache_write_tokens
    counts.reasoning_tokens = reasoning_tokens
    return counts


def test_a_group_of_plain_events_stores_no_remainder(book: PriceBook):
    """The remainders (uncached text input_tokens and output_tokens) are derived from the sides' costs, never
    stored: a group of events with only input and output tokens stores no per-unit cost at all."""
    rate = book.rate_for("gpt-4o", "openai", WHEN, 1000)
    assert rate is not None
    cost = rate.price(plain_counts(2, 1000, 50))
    assert cost.by_unit == {}
    assert (cost.input_units, cost.output_units) == (1000 * 25 * 10**17, 50 * 10 * 10**18)  # $2.50/M, $10/M
    assert cost.all_units() == {"input_tokens": 1000 * 25 * 10**17, "output_tokens": 50 * 10 * 10**18}
    cached = rate.price(plain_counts(2, 1000, 50, cache_read_tokens=400))
    assert cached.by_unit == {"cache_read_tokens": 400 * 125 * 10**16}  # $1.25/M
    assert cached.all_units() == {"input_tokens": 600 * 25 * 10**17, "cache_read_tokens": 400 * 125 * 10**16,
                                  "output_tokens": 50 * 10 * 10**18}


@pytest.mark.parametrize(("model", "provider"), [("gpt-4o", "openai"), ("claude-sonnet-4-5", "anthropic"),
                                                 ("sonar", "perplexity"), ("sonar-deep-research", "perplexity"),
                                                 ("o3", "openai")])
@pytest.mark.parametrize("counts", [(1, 1000, 50, 0, 0, 0), (3, 1000, 500, 300, 200, 100), (2, 0, 0, 0, 0, 0),
                                    (1, 700, 80, 700, 0, 80), (4, 10, 1, 0, 0, 0)])
def test_the_plain_fast_path_prices_as_the_general_path(book: PriceBook, model: str, provider: str, counts: tuple):
    """Counts without ``usage`` units take a shortcut (Rate._price_top_level); it must give exactly what the
    leaf-by-leaf path gives (taken when a group has a ``usage`` object, here an empty one)."""
    rate = book.rate_for(model, provider, ms(PLAIN_TIMES[1]), counts[1])
    assert rate is not None
    fast, general = plain_counts(*counts), plain_counts(*counts)
    general.units = {}
    assert rate.price(fast) == rate.price(general)
    assert not rate.price(fast).by_unit.keys() & REMAINDERS


def test_remainders_are_exact_over_rows_stored_with_and_without_them(book: PriceBook):
    """Rows written while unit_costs still held the remainders and rows written since, summed key by key as
    ClickHouse's sumMap sums them, read back as the exact per-unit costs of their union."""
    rate = book.rate_for("claude-sonnet-4-5", "anthropic", WHEN, 1000)
    assert rate is not None
    old = rate.price(plain_counts(2, 1000, 50, cache_read_tokens=300, cache_write_tokens=200))
    with_units = plain_counts(1, 500, 20, cache_write_tokens=200)
    with_units.add_units({"cache_write_1h_tokens": 150, "web_searches": 3})
    new = [rate.price(plain_counts(1, 900, 70, reasoning_tokens=30)), rate.price(with_units)]
    rows = [(old.all_units(), old.input_units, old.output_units)]  # stored as before: remainders included
    rows += [(cost.by_unit, cost.input_units, cost.output_units) for cost in new]
    summed: dict[str, int] = {}
    for stored, _, _ in rows:
        for name, value in stored.items():
            summed[name] = summed.get(name, 0) + value
    assert "input_tokens" in summed  # only the old row's part of it
    read = costs_by_unit(summed, sum(row[1] for row in rows), sum(row[2] for row in rows))
    expected: dict[str, int] = {}
    for cost in (old, *new):
        for name, value in cost.all_units().items():
            expected[name] = expected.get(name, 0) + value
    assert read == dict(sorted(expected.items()))
    assert read["input_tokens"] == (500 + 900 + 300) * 3 * 10**18  # $3/M uncached: 1000-300-200, 900, 500-200
    assert sum(read.values()) == sum(cost.total_units for cost in (old, *new))


def test_an_unreported_overlap_is_zero(book: PriceBook):
    """Audio and cached tokens reported apart, their overlap (cached audio) not: genai-prices refuses to guess
    it; meterline takes it as 0, as it takes every absent unit, which it equals explicitly."""
    rate = book.rate_for("gpt-4o-realtime-preview", "openai", WHEN, 1000)
    assert rate is not None and "cache_audio_read_tokens" in dict(rate.prices)
    values = {"input_tokens": 1000, "input_audio_tokens": 600, "cache_read_tokens": 300, "output_tokens": 10}
    with pytest.raises(ValueError, match="cache_audio_read_tokens"):
        genai_prices.calc_price(Usage(**values), "gpt-4o-realtime-preview", provider_id="openai")
    assert our_price(book, "gpt-4o-realtime-preview", "openai", WHEN, values) == genai_price(
        {**values, "cache_audio_read_tokens": 0}, "gpt-4o-realtime-preview", "openai", WHEN)


def test_tier_is_chosen_by_the_events_input_tokens(book: PriceBook):
    when = ms(PLAIN_TIMES[1])
    below, at, above = (book.rate_for("gemini-2.5-pro", "google", when, n) for n in (199_999, 200_000, 200_001))
    assert below is at and at is not above
    assert at is not None and at.version == f"genai-prices {VERSION} google/gemini-2.5-pro in<=200000"
    assert above is not None and above.version == f"genai-prices {VERSION} google/gemini-2.5-pro in>200000"


def test_time_of_day_prices_switch_on_the_minute(book: PriceBook):
    start = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)  # deepseek-chat: 00:30-16:30 UTC
    before, after = (book.rate_for("deepseek-chat", "deepseek", ms(t), 10) for t in
                     (start - timedelta(milliseconds=1), start))
    assert before is not None and after is not None and before is not after
    assert before.version.endswith("p1 00:30-16:30Z") and after.version.endswith("deepseek-chat p0")


def test_same_inputs_give_the_same_interned_rate(book: PriceBook):
    when = ms(PLAIN_TIMES[1])
    first = book.rate_for("claude-sonnet-4-5", "anthropic", when, 1000)
    assert first is book.rate_for("claude-sonnet-4-5", "anthropic", when + 3_600_000, 2000)
    assert first is book.rate_for("Claude-Sonnet-4-5", "Anthropic", when, 3000)
    other_book = PriceBook().rate_for("claude-sonnet-4-5", "anthropic", when, 1000)
    assert other_book == first and hash(other_book) == hash(first)
    assert {first: 1}[other_book] == 1


# --- service tiers (genai-prices' price variants) ------------------------------------------------------------

NOV = ms(datetime(2026, 11, 25, 12, tzinfo=UTC))  # after the gpt-5 variants' start dates


@pytest.mark.parametrize(("tier", "input_mtok", "output_mtok"), [
    ("", "1.25", "10"), ("default", "1.25", "10"), ("flex", "0.625", "5"), ("priority", "2.5", "20"),
    ("batch", "0.625", "5"), ("Flex", "0.625", "5"), ("scale", "1.25", "10"),
])
def test_a_service_tier_selects_genai_prices_tier_prices(book: PriceBook, tier: str, input_mtok: str,
                                                         output_mtok: str):
    rate = book.rate_for("gpt-5", "openai", NOV, 10, tier)
    assert rate.cost(1, 1_000_000, 0, 0, 1_000_000, 0) == (Decimal(input_mtok), Decimal(output_mtok))


def test_a_tier_variant_applies_only_from_its_start_date(book: PriceBook):
    before = book.rate_for("gpt-5", "openai", ms(datetime(2026, 10, 11, 23, 59, tzinfo=UTC)), 10, "flex")
    after = book.rate_for("gpt-5", "openai", ms(datetime(2026, 10, 12, tzinfo=UTC)), 10, "flex")
    assert before is book.rate_for("gpt-5", "openai", NOV, 10)  # no flex price yet: the standard one
    assert after.version == f"genai-prices {VERSION} openai/gpt-5 +flex v1"


def test_anthropic_batch_is_half_price(book: PriceBook):
    rate = book.rate_for("claude-sonnet-4-5", "anthropic", NOV, 10, "batch")
    assert rate.cost(1, 1_000_000, 0, 0, 1_000_000, 0) == (Decimal("1.5"), Decimal("7.5"))


# --- units priced event by event -------------------------------------------------------------------------------

def test_per_second_prices_that_do_not_terminate_are_rounded_per_event(book: PriceBook):
    # gpt-live-1: $3 per hour of audio; 7 s = 7/1200 USD = 0.0058333... -> ...333 at 24 places
    rate = book.rate_for("gpt-live-1", "openai", WHEN, 0)
    assert rate.apart == {"audio_seconds"}
    assert rate.price_apart({"audio_seconds": 7}) == {"audio_seconds": 5_833_333_333_333_333_333_333}
    assert rate.price_apart({"audio_seconds": 1}) == {"audio_seconds": 833_333_333_333_333_333_333}
    assert rate.price_apart({"input_tokens": 5}) is None


def test_groqs_ten_second_minimum_is_applied_as_genai_prices_does(book: PriceBook):
    for seconds in (1, 9, 10, 11, 600):
        values = {"input_tokens": 0, "output_tokens": 0, "audio_seconds": seconds}
        assert our_price(book, "whisper-large-v3", "groq", WHEN, values) == genai_price(
            values, "whisper-large-v3", "groq", WHEN), seconds
    assert our_price(book, "whisper-large-v3", "groq", WHEN, {"audio_seconds": 1, "input_tokens": 0,
                                                              "output_tokens": 0})[0] == Decimal(
        "0.000308333333333333333333")  # 10 s x $0.111 / 3600 s


def test_priced_apart_costs_of_duplicates_are_taken_back():
    from pipeline.metering.dedup import SeenRequests
    from pipeline.metering.rollup import RawMessage, RollupBuilder
    from support.writes import bounds_at

    event = {"request_id": "a", "api_key_id": "k", "model": "gpt-live-1", "provider": "openai", "timestamp": WHEN,
             "input_tokens": 0, "output_tokens": 0, "usage": {"audio_seconds": 7}}
    messages = [RawMessage(i, b"k", msgspec.json.encode({**event, "request_id": rid}))
                for i, rid in enumerate(("a", "b"))]
    draft = RollupBuilder(ContractDecoder(), PriceBook()).draft(messages, bounds_at(WHEN + 1000), SeenRequests())
    rollup = draft.finish({("k", "b")})  # "b" turns out to be counted already
    [cost] = rollup.costs.values()
    assert cost.by_unit == {"audio_seconds": 5_833_333_333_333_333_333_333}


# --- the snapshot as a whole ---------------------------------------------------------------------------------

def test_snapshot_constraint_boundaries_fall_on_whole_utc_minutes():
    """rate_for caches the chosen price sheet per UTC minute: safe only while this holds."""
    kinds = set()
    for provider in data.providers:
        for model in provider.models:
            assert isinstance(model.prices, (ModelPrice, list))
            for constraint in all_constraints(model):
                kinds.add(type(constraint))
                if isinstance(constraint, StartDateConstraint):
                    assert type(constraint.start_date) is date  # compared with the UTC date
                elif isinstance(constraint, TimeOfDateConstraint):
                    for t in (constraint.start_time, constraint.end_time):
                        utc = datetime.combine(date(2026, 1, 1), t, t.tzinfo or UTC).astimezone(UTC)
                        assert (utc.second, utc.microsecond) == (0, 0), (provider.id, model.id, t)
                else:
                    assert constraint is None, (provider.id, model.id, constraint)
    assert kinds == {type(None), StartDateConstraint, TimeOfDateConstraint}


def test_snapshot_rates_are_exact_at_the_stored_scale():
    rates = list(snapshot_rates())
    assert len(rates) > 2000
    apart = {r.version for r in rates if r.apart}
    assert apart and all(BY_NAME[u].counts == "second" for r in rates for u in r.apart)  # only per-hour audio
    # the rollup groups events by version string: it must identify one Rate
    assert len({rate.version for rate in rates}) == len(rates)
    # and every model of every provider has its rates
    owners = {f"{provider.id}/{model.id}" for provider in data.providers for model in provider.models}
    assert len(owners) > 100 and {rate.version.split(" ")[2] for rate in rates} == owners


def test_a_sheet_that_cannot_be_stored_exactly_is_unpriced(caplog):
    sheet = ModelPrice(input_mtok=Decimal("1e-19"), output_mtok=Decimal(1))
    with pytest.raises(PricingError, match="more than 24 decimal places"):
        Rate("x", {"input_tokens": Decimal("1e-19"), "output_tokens": Decimal(1)})
    from pipeline.metering.pricing import _or_unpriced, sheet_rates
    assert _or_unpriced(lambda: sheet_rates("genai-prices x/y", sheet), "genai-prices x/y") is None
    assert "counts as unpriced" in caplog.text


def test_every_genai_prices_price_key_is_a_declared_unit():
    keys = {key for p in data.providers for m in p.models
            for s in [s for _, s in sheets(m)] + [v.prices for v in m.price_variants or ()]
            for key, value in vars(s).items() if value is not None}
    assert keys <= set(BY_NAME_OF_KEY)


def test_quantize_usd_keeps_the_value_or_raises():
    assert quantize_usd(Decimal("1.5")).as_tuple().exponent == -24
    assert quantize_usd(Decimal("1.5")) == Decimal("1.5")
    assert quantize_usd(Decimal("-1e-24")) == Decimal("-1e-24")
    assert quantize_usd(Decimal(10) ** 14 - 1) == Decimal(10) ** 14 - 1
    with pytest.raises(PricingError):
        quantize_usd(Decimal("1e-25"))
    with pytest.raises(PricingError):
        quantize_usd(Decimal(10) ** 14)  # more than 38 digits at scale 24


# --- overrides ---------------------------------------------------------------------------------------------

ACME = """
[[price]]
model = "acme-large"
effective_from = 2026-01-01
input_mtok = "3.00"
output_mtok = "15.00"
cache_read_mtok = "0.30"
request = "0.001"

[[price]]
model = "ACME-large"
effective_from = 2026-03-01T12:00:00Z
input_mtok = 2
output_mtok = "10"

[[price]]
model = "acme-large"
provider = "acme-eu"
effective_from = 2026-03-01T12:00:00Z
input_mtok = "4"
output_mtok = "16"

[[price]]
model = "gpt-4o"
effective_from = 2026-01-01T00:00:00+01:00
input_mtok = "1"
output_mtok = "2"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return path


@pytest.fixture
def acme_book(tmp_path: Path) -> PriceBook:
    return PriceBook.from_file(write(tmp_path, ACME))


def test_overrides_are_parsed_exactly(tmp_path: Path):
    first, second, eu, gpt = load_overrides(write(tmp_path, ACME)).prices
    assert first == PriceOverride(model="acme-large", effective_from=datetime(2026, 1, 1, tzinfo=UTC),
                                  input_mtok=Decimal("3.00"), output_mtok=Decimal("15.00"),
                                  cache_read_mtok=Decimal("0.30"), request=Decimal("0.001"))
    assert second.input_mtok == 2 and eu.provider == "acme-eu"
    assert gpt.effective_from == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)


def test_effective_from_selects_the_newest_entry_at_the_event_time(acme_book: PriceBook):
    def version(when: datetime, provider: str | None = None) -> str | None:
        rate = acme_book.rate_for("acme-large", provider, ms(when), 10)
        return None if rate is None else rate.version
    switch = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert version(datetime(2025, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)) is None  # no genai-prices price
    assert version(datetime(2026, 1, 1, tzinfo=UTC)) == "override acme-large 2026-01-01"
    assert version(switch - timedelta(milliseconds=1)) == "override acme-large 2026-01-01"
    assert version(switch) == "override ACME-large 2026-03-01T12:00Z"
    assert version(datetime(2030, 1, 1, tzinfo=UTC)) == "override ACME-large 2026-03-01T12:00Z"


def test_provider_scoped_overrides_only_match_their_provider(acme_book: PriceBook):
    when = ms(datetime(2026, 6, 1, tzinfo=UTC))
    eu = acme_book.rate_for("acme-large", "Acme-EU", when, 10)
    assert eu is not None and eu.version == "override acme-eu/acme-large 2026-03-01T12:00Z"
    for provider in (None, "acme-us"):
        rate = acme_book.rate_for("acme-large", provider, when, 10)
        assert rate is not None and rate.version == "override ACME-large 2026-03-01T12:00Z"
    before = acme_book.rate_for("acme-large", "acme-eu", ms(datetime(2026, 2, 1, tzinfo=UTC)), 10)
    assert before is not None and before.version == "override acme-large 2026-01-01"


def test_override_costs_are_exact_with_cache_defaults(acme_book: PriceBook):
    rate = acme_book.rate_for("acme-large", None, ms(datetime(2026, 2, 1, tzinfo=UTC)), 10)
    assert rate is not None
    # cache writes default to the input price; reasoning tokens are output tokens
    assert rate.cost(2, 1000, 100, 50, 300, 200) == (
        850 * Decimal("3e-6") + 100 * Decimal("0.3e-6") + 50 * Decimal("3e-6") + 2 * Decimal("0.001"),
        300 * Decimal("15e-6"))


def test_overrides_price_any_unit_in_genai_prices_keys(tmp_path: Path):
    book = PriceBook.from_file(write(tmp_path, "[[price]]\n" + ENTRY + 'cache_write_mtok = "1.25"\ncache_write_1h_mtok = "2"\n'
                                     'web_searches_kcount = "10"\naudio_hours = "0.111"\n'))
    rate = book.rate_for("m", None, ms(datetime(2026, 2, 1, tzinfo=UTC)), 10)
    assert rate.cost(1, 1000, 0, 300, 10, 0, cache_write_1h_tokens=100, web_searches=2) == (
        700 * Decimal("1e-6") + 200 * Decimal("1.25e-6") + 100 * Decimal("2e-6") + 2 * Decimal("0.01"),
        10 * Decimal("2e-6"))
    assert rate.apart == {"audio_seconds"}


def test_overrides_win_over_genai_prices_from_their_effective_time(acme_book: PriceBook):
    midnight_cet = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    before = acme_book.rate_for("gpt-4o", "openai", ms(midnight_cet) - 1, 10)
    after = acme_book.rate_for("gpt-4o", "openai", ms(midnight_cet), 10)
    assert before is not None and before.version == f"genai-prices {VERSION} openai/gpt-4o"
    assert after is not None and after.version == "override gpt-4o 2025-12-31T23:00Z"
    assert after.cost(1, 1_000_000, 0, 0, 1_000_000, 0) == (1, 2)


def test_no_overrides_file_means_genai_prices_only():
    book = PriceBook.from_file(None)
    rate = book.rate_for("gpt-4o", "openai", ms(PLAIN_TIMES[1]), 10)
    assert rate is not None and rate.version.startswith("genai-prices")


# --- schedules and tiers in overrides --------------------------------------------------------------------------

SCHEDULED = """
[[price]]
model = "acme-large"
effective_from = 2026-01-01
input_mtok = "4"
output_mtok = "16"

[[price]]                      # off-peak: every night 22:00-06:00, Berlin time
model = "acme-large"
effective_from = 2026-01-01
timezone = "Europe/Berlin"
hours = "22:00-06:00"
input_mtok = "2"
output_mtok = "8"

[[price]]                      # weekends all day
model = "acme-large"
effective_from = 2026-01-01
timezone = "Europe/Berlin"
days = ["sat", "sun"]
input_mtok = "1"
output_mtok = "4"

[[price]]
model = "acme-large"
effective_from = 2026-01-01
service_tier = "priority"
input_mtok = "8"
output_mtok = "32"

[[price]]
model = "*"
effective_from = 2026-01-01
service_tier = "batch"
multiplier = "0.5"
"""


@pytest.fixture
def scheduled(tmp_path: Path) -> PriceBook:
    return PriceBook.from_file(write(tmp_path, SCHEDULED))


def input_price(book: PriceBook, when: datetime, tier: str = "", model: str = "acme-large") -> Decimal:
    rate = book.rate_for(model, None, ms(when), 10, tier)
    return rate.cost(1, 1_000_000, 0, 0, 0, 0)[0]


BERLIN_WINTER = timedelta(hours=1)  # CET: UTC+1


@pytest.mark.parametrize(("utc", "expected"), [
    (datetime(2026, 11, 25, 20, 59, tzinfo=UTC), "4"),  # Wednesday 21:59 Berlin: peak
    (datetime(2026, 11, 25, 21, 0, tzinfo=UTC), "2"),  # 22:00 Berlin: off-peak starts
    (datetime(2026, 11, 26, 4, 59, 59, 999000, tzinfo=UTC), "2"),  # 05:59:59.999 Berlin
    (datetime(2026, 11, 26, 5, 0, tzinfo=UTC), "4"),  # 06:00 Berlin
    (datetime(2026, 11, 27, 22, 59, tzinfo=UTC), "2"),  # Friday 23:59: the Friday night window
    (datetime(2026, 11, 27, 23, 0, tzinfo=UTC), "1"),  # Saturday 00:00 Berlin: the weekend entry (more specific)
    (datetime(2026, 11, 29, 22, 59, tzinfo=UTC), "1"),  # Sunday 23:59 Berlin
    (datetime(2026, 11, 29, 23, 0, tzinfo=UTC), "2"),  # Monday 00:00 Berlin: Sunday night's off-peak window
])
def test_time_of_day_and_day_of_week_windows_in_a_zone(scheduled: PriceBook, utc: datetime, expected: str):
    assert input_price(scheduled, utc) == Decimal(expected)


@pytest.mark.parametrize(("utc", "expected"), [
    # 2026-03-29: Berlin springs from 02:00 CET to 03:00 CEST (01:00 UTC). Sunday: weekend all day.
    # 2026-03-30 (Monday) 05:59 CEST = 03:59 UTC is off-peak, 06:00 CEST = 04:00 UTC (not 05:00) is peak.
    (datetime(2026, 3, 30, 3, 59, tzinfo=UTC), "2"), (datetime(2026, 3, 30, 4, 0, tzinfo=UTC), "4"),
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC). Monday 26 Oct 06:00 CET is 05:00 UTC again.
    (datetime(2026, 10, 26, 4, 59, tzinfo=UTC), "2"), (datetime(2026, 10, 26, 5, 0, tzinfo=UTC), "4"),
    # Friday 23 Oct 22:00 CEST = 20:00 UTC; the Saturday after is weekend from 22:00 UTC Friday
    (datetime(2026, 10, 23, 19, 59, tzinfo=UTC), "4"), (datetime(2026, 10, 23, 20, 0, tzinfo=UTC), "2"),
    (datetime(2026, 10, 23, 22, 0, tzinfo=UTC), "1"),
])
def test_windows_follow_daylight_saving_changes(scheduled: PriceBook, utc: datetime, expected: str):
    assert input_price(scheduled, utc) == Decimal(expected)


def test_the_minute_cache_is_right_on_both_sides_of_a_window_and_a_dst_change(tmp_path: Path):
    """The same book asked minute after minute across a boundary: no cached minute leaks into the next."""
    book = PriceBook.from_file(write(tmp_path, SCHEDULED))
    fresh = lambda when: input_price(PriceBook.from_file(write(tmp_path, SCHEDULED)), when)  # noqa: E731
    start = datetime(2026, 10, 25, 0, 55, tzinfo=UTC)  # around the fall-back hour (01:00 UTC)
    for minute in range(0, 10):
        for second in (0, 59.999):
            when = start + timedelta(minutes=minute, seconds=second)
            assert input_price(book, when) == fresh(when), when


def test_a_zone_with_a_seconds_offset_is_judged_at_the_events_millisecond(tmp_path: Path):
    # Amsterdam Mean Time (+00:19:32) until 1937: a window boundary at 01:00 local falls at 00:40:28 UTC.
    text = ('[[price]]\nmodel = "m"\neffective_from = 1930-01-01\ninput_mtok = "4"\noutput_mtok = "1"\n'
            '[[price]]\nmodel = "m"\neffective_from = 1930-01-01\ntimezone = "Europe/Amsterdam"\n'
            'hours = "01:00-02:00"\ninput_mtok = "2"\noutput_mtok = "1"\n')
    book = PriceBook.from_file(write(tmp_path, text))
    edge = datetime(1935, 6, 1, 0, 40, 28, tzinfo=UTC) - timedelta(hours=1)  # AMT summer time: +01:19:32
    assert input_price(book, edge - timedelta(seconds=1), model="m") == 4
    assert input_price(book, edge, model="m") == 2


def test_a_tier_entry_wins_for_its_tier_and_a_multiplier_scales_the_rest(scheduled: PriceBook):
    peak = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert input_price(scheduled, peak, "priority") == 8
    assert input_price(scheduled, peak, "batch") == 2  # 4 x 0.5
    assert input_price(scheduled, datetime(2026, 11, 25, 22, tzinfo=UTC), "batch") == 1  # off-peak 2 x 0.5
    assert input_price(scheduled, peak, "flex") == 4  # no entry for flex: the price without a tier
    rate = scheduled.rate_for("gpt-4o", "openai", ms(peak), 10, "batch")  # "*" scales genai-prices' price too
    assert rate.version == f"genai-prices {VERSION} openai/gpt-4o x0.5 batch"
    assert rate.cost(1, 1_000_000, 0, 0, 1_000_000, 0) == (Decimal("1.25"), Decimal("5"))


def test_schedule_and_tier_appear_in_the_version(scheduled: PriceBook):
    night = scheduled.rate_for("acme-large", None, ms(datetime(2026, 11, 25, 22, tzinfo=UTC)), 10)
    assert night.version == "override acme-large 2026-01-01 [daily 22:00-06:00 Europe/Berlin]"
    assert scheduled.rate_for("acme-large", None, ms(datetime(2026, 11, 25, 12, tzinfo=UTC)), 10,
                              "priority").version == "override acme-large 2026-01-01 tier=priority"


ENTRY = 'model = "m"\neffective_from = 2026-01-01\ninput_mtok = "1"\noutput_mtok = "2"\n'


@pytest.mark.parametrize(("entry", "message"), [
    ('effective_from = 2026-01-01\ninput_mtok = "1"\noutput_mtok = "2"', "price[0]: missing required field 'model'"),
    ('model = "m"\ninput_mtok = "1"\noutput_mtok = "2"', "price[0]: missing required field 'effective_from'"),
    ('model = "m"\neffective_from = 2026-01-01\noutput_mtok = "2"', "price[0]: missing required field 'input_mtok'"),
    ('model = "m"\neffective_from = 2026-01-01\ninput_mtok = "1"', "price[0]: missing required field 'output_mtok'"),
    (ENTRY + "cache_read_mtok = 0.3", "price[0]: field 'cache_read_mtok': TOML floats are not exact"),
    (ENTRY + 'request = "-0.01"', "price[0]: field 'request': '-0.01' is not a non-negative decimal amount"),
    (ENTRY + 'cache_write_mtok = "lots"', "price[0]: field 'cache_write_mtok': 'lots' is not a non-negative"),
    (ENTRY + "request = true", "price[0]: field 'request': must be a string"),
    (ENTRY + 'cache_read_mtok = "1e-19"', "price[0]: field 'cache_read_mtok': '1e-19' is not exact"),
    (ENTRY + 'colour = "blue"', "price[0]: unknown key 'colour'"),
    (ENTRY + 'provider = ""', "price[0]: field 'provider': must be a non-empty string"),
    (ENTRY.replace("2026-01-01", '"2026-01-01"'), "price[0]: field 'effective_from': must be a TOML date"),
    (ENTRY.replace("2026-01-01", "2026-01-01T00:00:00"), "price[0]: field 'effective_from': a datetime needs an"),
    (ENTRY.replace("2026-01-01", "2026-01-01T00:00:30Z"), "price[0]: field 'effective_from': must fall on a whole"),
    (ENTRY + 'cache_write_1h_mtok = "2"', "price[0]: pricing a part needs its wholes and overlaps priced too "
                                          "(genai-prices' rule): add cache_write_mtok"),
    (ENTRY + 'timezone = "Mars/Olympus"', "price[0]: field 'timezone': 'Mars/Olympus' is not an IANA time zone"),
    (ENTRY + 'hours = "22-6"', "price[0]: field 'hours': local \"HH:MM-HH:MM\""),
    (ENTRY + 'days = ["someday"]', "price[0]: field 'days': a non-empty list of mon"),
    (ENTRY + 'multiplier = "0.5"', "price[0]: a 'multiplier' needs a 'service_tier'"),
    ('model = "*"\neffective_from = 2026-01-01\nservice_tier = "batch"\nmultiplier = "0.5"\ninput_mtok = "1"',
     "price[0]: give either a 'multiplier' or prices, not both"),
    (ENTRY.replace('"m"', '"*"'), "price[0]: model \"*\" is only for service-tier multipliers"),
])
def test_invalid_override_entries_are_named_in_the_error(tmp_path: Path, entry: str, message: str):
    with pytest.raises(PricingError, match="invalid price overrides") as caught:
        load_overrides(write(tmp_path, f"[[price]]\n{entry}\n"))
    assert message in str(caught.value)


def test_invalid_aliases_are_named_in_the_error(tmp_path: Path):
    with pytest.raises(PricingError) as caught:
        load_overrides(write(tmp_path, '[alias]\n"a" = ""\n"b" = 3\n[alias.azure]\n"c" = true\n'))
    message = str(caught.value)
    assert "alias.a: the target must be a model id" in message and "alias.b:" in message
    assert "alias.azure.c:" in message


def test_input_mtok_float_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError, match=r"price\[0\]: field 'input_mtok': TOML floats are not exact"):
        PriceBook.from_file(write(tmp_path, "[[price]]\n" + ENTRY.replace('"1"', "3.0")))


def test_every_bad_entry_is_reported_at_once(tmp_path: Path):
    text = f"[[price]]\n{ENTRY}\n[[price]]\n{ENTRY}output_mtok_x = 1\n[[price]]\n{ENTRY}\n[[price]]\nmodel = 1\n"
    with pytest.raises(PricingError) as caught:
        load_overrides(write(tmp_path, text))
    message = str(caught.value)
    assert "price[1]: unknown key 'output_mtok_x'" in message
    assert "price[2]: same model, provider, effective_from, service_tier and schedule as price[0]" in message
    assert "price[3]: field 'model': must be a non-empty string" in message
    assert "price[0]" not in message.replace("as price[0]", "")


def test_malformed_overrides_files_are_rejected(tmp_path: Path):
    with pytest.raises(PricingError, match="cannot read price overrides"):
        load_overrides(write(tmp_path, "[[price]\n"))
    with pytest.raises(PricingError, match="unknown top-level key 'prices'"):
        load_overrides(write(tmp_path, f"[[prices]]\n{ENTRY}"))
    with pytest.raises(PricingError, match="cannot read price overrides"):
        load_overrides(tmp_path / "missing.toml")


def test_programmatic_overrides_must_start_on_a_whole_utc_minute():
    with pytest.raises(PricingError, match="whole UTC minute"):
        PriceOverride("m", datetime(2026, 1, 1), Decimal(1), Decimal(2))  # naive: ambiguous instant
    with pytest.raises(PricingError, match="whole UTC minute"):
        PriceOverride("m", datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC), Decimal(1), Decimal(2))


def test_tiered_rates_pick_the_band_of_the_input_tokens():
    low, high = Rate("low", {"input_tokens": Decimal(1)}), Rate("high", {"input_tokens": Decimal(2)})
    tiered = TieredRates((100,), (low, high))
    assert tiered.rate_for(100) is low and tiered.rate_for(101) is high
    assert USAGE_UNITS  # the unit table is loaded
