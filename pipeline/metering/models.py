"""Which genai-prices model (and provider) an event's ``model`` and ``provider`` mean.

Gateways name models in many ways: ``gpt-4o``, ``GPT-4o``, ``openai/gpt-4o`` (LiteLLM routes), ``azure/…``,
``vertex_ai/claude-sonnet-4-5@20250929``, Bedrock ids with a region or ``global.`` prefix
(``us.anthropic.claude-sonnet-4-5-20250929-v1:0``), and operators' own deployment names. A
:class:`ModelResolver` tries, in order, until genai-prices finds a model:

1. the operator's alias for the model (``[alias]`` in the overrides file, optionally per provider): the
   target (``openai/gpt-4o``) replaces the model, and its provider prefix, if any, replaces the provider;
2. the model as it is, with the event's provider (a provider genai-prices does not know is also tried as
   absent, so the model alone decides; genai-prices itself reads LiteLLM's ``litellm`` + ``openai/gpt-4o``);
3. a Bedrock id (``[region.]vendor.model[-vN:M]``): on AWS Bedrock's prices first, then the vendor's own;
4. ``prefix/rest`` where the prefix names a provider (:data:`GATEWAY_PREFIXES`, or a genai-prices provider
   id): ``rest`` with the event's provider, then with the prefix's provider (so ``openrouter/openai/gpt-4o``
   and ``bedrock/us.anthropic.…`` work too).

Case never matters (genai-prices compares lower case). Resolution is cached per (model, provider) by the
caller. A model nothing resolves is *unpriced*: still counted, and listed by ``meterline prices unpriced``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id
from genai_prices.types import ModelInfo, Provider

# Route prefixes of gateways (LiteLLM's provider names) -> genai-prices provider id.
GATEWAY_PREFIXES: Mapping[str, str] = {
    "openai": "openai", "text-completion-openai": "openai", "azure": "azure", "azure_ai": "azure",
    "anthropic": "anthropic", "bedrock": "aws", "bedrock_converse": "aws", "aws": "aws", "sagemaker": "aws",
    "vertex_ai": "google", "vertex_ai_beta": "google", "gemini": "google", "google": "google", "palm": "google",
    "groq": "groq", "mistral": "mistral", "codestral": "mistral", "deepseek": "deepseek", "xai": "x-ai",
    "x-ai": "x-ai", "cohere": "cohere", "cohere_chat": "cohere", "together_ai": "together", "together": "together",
    "fireworks_ai": "fireworks", "fireworks": "fireworks", "perplexity": "perplexity", "openrouter": "openrouter",
    "novita": "novita", "cerebras": "cerebras", "databricks": "databricks", "cloudflare": "cloudflare",
    "moonshot": "moonshotai", "moonshotai": "moonshotai", "voyage": "voyageai", "voyageai": "voyageai",
    "elevenlabs": "elevenlabs", "baseten": "baseten", "zai": "zai", "minimax": "minimax",
}
# Bedrock model ids: an optional inference-profile prefix (a geography such as us, eu, apac, us-gov, or
# global), the vendor, the model, an optional -vN[:M] version (AWS Bedrock docs, "Supported foundation models"
# and "Cross-Region inference").
BEDROCK_ID = re.compile(r"^(?:(?P<region>global|[a-z]{2,4}(?:-[a-z]{2,4})?)\.)?"
                        r"(?P<vendor>anthropic|meta|amazon|mistral|cohere|ai21|deepseek|openai|qwen|writer)\."
                        r"(?P<model>[a-z0-9][a-z0-9.\-_]*?)(?:-v\d+(?::\d+)?)?$")
BEDROCK_VENDORS = {"anthropic": "anthropic", "meta": "meta", "mistral": "mistral", "cohere": "cohere",
                   "deepseek": "deepseek", "openai": "openai", "amazon": "aws"}


@dataclass(frozen=True)
class Target:
    """What an alias points at: a model reference and, when the target named one, a provider."""

    model: str
    provider: str | None


@dataclass(frozen=True)
class Aliases:
    """Operator aliases (lower-case keys): ``any`` for every provider, ``scoped[provider]`` for one."""

    any: Mapping[str, Target]
    scoped: Mapping[str, Mapping[str, Target]]

    def target(self, model: str, provider: str | None) -> Target | None:
        key = model.lower()
        if provider:
            found = self.scoped.get(provider.lower(), {}).get(key)
            if found is not None:
                return found
        return self.any.get(key)


NO_ALIASES = Aliases({}, {})


def split_target(text: str) -> Target:
    """``openai/gpt-4o`` -> Target("gpt-4o", "openai"); a first segment that names no provider stays part of
    the model (``google/gemini-2.5-flash-lite`` on OpenRouter is one model id)."""
    head, slash, rest = text.partition("/")
    provider = GATEWAY_PREFIXES.get(head.lower())
    return Target(rest, provider) if slash and rest and provider else Target(text, None)


@dataclass(frozen=True)
class Resolved:
    """A model genai-prices prices: ``provider`` is the provider it is priced for (genai-prices' answer,
    which may differ from the model's ``owner`` when a provider falls back to another's list)."""

    provider: Provider
    owner: str
    model: ModelInfo

    @property
    def own_model(self) -> bool:
        """Whether the model is in the provider's own list (genai-prices applies price variants only then)."""
        return any(m is self.model for m in self.provider.models)


class ModelResolver:
    """Finds the genai-prices model of an event's (model, provider); see the module docstring for the order."""

    def __init__(self, snapshot: DataSnapshot, aliases: Aliases = NO_ALIASES) -> None:
        self._snapshot = snapshot
        self._aliases = aliases
        self._owners = {id(m): p.id for p in snapshot.providers for m in p.models}

    def resolve(self, model: str, provider: str | None) -> Resolved | None:
        target = self._aliases.target(model, provider)
        if target is not None:
            model, provider = target.model, target.provider or provider
        for ref, provider_id in self.candidates(model, provider or None):
            try:
                found_provider, info = self._snapshot.find_provider_model(ref, None, provider_id, None)
            except LookupError:
                continue
            return Resolved(found_provider, self._owners[id(info)], info)
        return None

    def candidates(self, model: str, provider: str | None, depth: int = 0) -> Iterator[tuple[str, str | None]]:
        """(model reference, provider id or None) pairs to try, best first."""
        known = provider is not None and self._knows(provider)
        bedrock = BEDROCK_ID.match(model.lower())
        if bedrock and (not known or find_provider_by_id(self._snapshot.providers, provider or "").id == "aws"):
            yield from self._bedrock(model.lower(), bedrock)
        if not provider:
            yield model, None
        elif known:
            yield model, provider
        else:  # genai-prices knows nothing of this provider: match the model alone
            yield model, provider  # provider first: genai-prices reads "litellm" + "openai/gpt-4o"
            yield model, None
        if bedrock and known and find_provider_by_id(self._snapshot.providers, provider or "").id != "aws":
            yield from self._bedrock(model.lower(), bedrock)
        head, slash, rest = model.partition("/")
        if slash and rest and depth < 3:
            prefixed = GATEWAY_PREFIXES.get(head.lower()) or (head.lower() if self._knows(head) else None)
            if known:
                yield from self.candidates(rest, provider, depth + 1)
            if prefixed is not None:
                yield from self.candidates(rest, prefixed, depth + 1)

    def _knows(self, provider: str) -> bool:
        return find_provider_by_id(self._snapshot.providers, provider) is not None

    def _bedrock(self, model: str, match: re.Match[str]) -> Iterator[tuple[str, str | None]]:
        yield model, "aws"
        if match.group("region"):
            yield model.split(".", 1)[1], "aws"
        vendor = BEDROCK_VENDORS.get(match.group("vendor"))
        if vendor is not None:
            yield match.group("model"), vendor
