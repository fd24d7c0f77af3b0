"""The quick start's checked-in collector payloads (schemas/examples/quickstart/) and, written out by hand from
the payloads and the mapping rules of docs/ingest.md, the usage each one must show under its key.

The payloads carry the placeholder time ``1111111111`` (epoch seconds, also inside epoch ms and ns); README
tells users to replace it with ``sed "s/1111111111/$NOW/g"``. :func:`payload` does the same substitution.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import Usage, calc_price

from schemas import EXAMPLES_DIR

QUICKSTART_DIR = EXAMPLES_DIR / "quickstart"
PLACEHOLDER = "1111111111"
LITELLM_KEY = "634b80b4131bcda5d63389698920730b7b291c18d917d39605ffcf6a4dcc4055"  # sha256("sk-quickstart-litellm")


@dataclass(frozen=True)
class Request:
    """One request of a payload as the contract counts it (input includes cache; output includes reasoning)."""

    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def cost(self, at: datetime) -> Decimal:
        """genai-prices' own price of this request at ``at`` (what the worker must store, exactly)."""
        return calc_price(Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                                cache_read_tokens=self.cache_read_tokens, cache_write_tokens=self.cache_write_tokens,
                                output_reasoning_tokens=self.reasoning_tokens),
                          self.model, provider_id=self.provider, genai_request_timestamp=at).total_price


@dataclass(frozen=True)
class Case:
    name: str  # file stem in schemas/examples/quickstart/
    path: str  # collector route
    key: str  # api_key_id the usage shows under
    requests: tuple[Request, ...]

    def totals(self, at: datetime) -> dict:
        """The summary totals ``meterline usage --json`` must report for ``key`` (cost as exact text)."""
        fields = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
        totals = {name: sum(getattr(r, name) for r in self.requests) for name in fields}
        totals["requests"] = len(self.requests)
        totals["total_cost"] = sum((r.cost(at) for r in self.requests), Decimal(0))
        return totals


CASES = (
    Case("events", "/v1/events", "key_quickstart_events", (
        Request("gpt-4o-mini", "openai", 1200, 340, cache_read_tokens=1024),
        Request("gpt-4o", "openai", 5000, 620),
    )),
    Case("openai", "/v1/openai", "key_quickstart_openai", (
        Request("gpt-4o-mini-2024-07-18", "openai", 2006, 300, cache_read_tokens=1920),
        Request("o4-mini-2025-04-16", "openai", 5200, 640, cache_read_tokens=4096, reasoning_tokens=448),
    )),
    # Anthropic's input_tokens excludes the cache buckets: 150 + 30,000 read + 2,048 written.
    Case("anthropic", "/v1/anthropic", "key_quickstart_anthropic", (
        Request("claude-sonnet-4-5-20250929", "anthropic", 32198, 812, cache_read_tokens=30000,
                cache_write_tokens=2048),
    )),
    Case("litellm", "/v1/litellm", LITELLM_KEY, (
        Request("gpt-4.1-mini", "openai", 1500, 210, cache_read_tokens=512),
    )),
    # The invoke_agent span repeats its child's usage and is skipped.
    Case("otlp", "/v1/otlp/v1/traces", "key_quickstart_otel", (
        Request("gpt-4o-2024-08-06", "openai", 2006, 300, cache_read_tokens=1920),
    )),
)


def payload(name: str, now_s: int) -> bytes:
    """The checked-in payload with the placeholder time replaced by ``now_s`` (epoch seconds), as README's
    ``sed`` does it."""
    return (QUICKSTART_DIR / f"{name}.json").read_text().replace(PLACEHOLDER, str(now_s)).encode()


def posted_at(now_s: int) -> datetime:
    return datetime.fromtimestamp(now_s, UTC)
