"""What calls cost in USD: reported by the provider, else priced per model.

The order, for one call:
1. the cost the provider reported (OpenRouter's `usage.cost`): what was actually billed;
2. no tokens at all (a cache hit, a call refused before answering): nothing was billed;
3. the recipe's `price = { input = …, output = … }` for that model (USD per million tokens);
4. models on this machine (`local:`, `ollama:`): free;
5. pydantic's `genai-prices` catalogue, by provider name, else by the provider's base URL;
6. otherwise unknown (None) — shown as "cost unknown", never as $0.

`genai-prices` loads its catalogue (~0.2 s) on the first lookup, never at `import moa`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from moa.trace import CallRecord, Result
from moa.types import Usage

# Providers that run on this machine: their calls cost nothing unless the recipe prices them.
FREE_PROVIDERS = frozenset({"local", "ollama"})
PER_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / PER_MILLION


def call_cost(
    provider: str,
    model: str,
    usage: Usage,
    *,
    reported: float | None = None,
    override: Price | None = None,
    base_url: str | None = None,
) -> float | None:
    """The USD cost of one call of `provider:model` that used `usage`; None if unknown."""
    if reported is not None:
        return reported
    if usage.input_tokens == 0 and usage.output_tokens == 0:
        return 0.0
    if override is not None:
        return override.cost(usage)
    if provider in FREE_PROVIDERS:
        return 0.0
    return _catalogue_cost(provider, model, usage.input_tokens, usage.output_tokens, base_url)


@dataclass(frozen=True, slots=True)
class PriceBook:
    """A recipe's price overrides (by `provider:model`) and where its providers live."""

    overrides: Mapping[str, Price] = field(default_factory=dict)
    base_urls: Mapping[str, str] = field(default_factory=dict)  # provider name → base URL

    def cost(self, model_ref: str, usage: Usage) -> float | None:
        provider, _, model = model_ref.partition(":")
        return call_cost(
            provider,
            model,
            usage,
            reported=usage.cost_usd,
            override=self.overrides.get(model_ref),
            base_url=self.base_urls.get(provider),
        )

    def price_record(self, record: CallRecord) -> None:
        """Fill in the call's cost, unless it is known already (reported, or priced)."""
        if record.usage.cost_usd is None:
            cost = self.cost(record.model, record.usage)
            record.usage = replace(record.usage, cost_usd=cost)


def price_result(result: Result, book: PriceBook | None = None) -> Result:
    """Fill in the cost of every call of a run (idempotent); the same result, for chaining."""
    book = book or PriceBook()
    for record in result.calls:
        book.price_record(record)
    return result


def format_cost(result: Result) -> str:
    """ "$0.0123", or "cost unknown (…)" naming what is known, for summary lines."""
    cost = result.cost_usd
    if cost is not None:
        return format_usd(cost)
    unpriced = sorted({c.model for c in result.unpriced})
    known = f"{format_usd(result.known_cost_usd)} priced, " if result.known_cost_usd else ""
    return f"cost unknown ({known}no price for {', '.join(unpriced)})"


def format_usd(amount: float) -> str:
    if amount == 0:
        return "$0"
    if amount < 0.01:
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:.4f}"


def _catalogue_cost(
    provider: str, model: str, input_tokens: int, output_tokens: int, base_url: str | None
) -> float | None:
    where = _catalogue_entry(provider, model, base_url)
    if where is None:
        return None
    from genai_prices import Usage as CatalogueUsage
    from genai_prices import calc_price

    usage = CatalogueUsage(input_tokens=input_tokens, output_tokens=output_tokens)
    priced = calc_price(usage, model, **where)  # type: ignore[call-overload]
    return float(priced.total_price)


@lru_cache(maxsize=1024)
def _catalogue_entry(provider: str, model: str, base_url: str | None) -> dict[str, str] | None:
    """How the catalogue knows this model (by provider name or by endpoint), or None."""
    from genai_prices import Usage as CatalogueUsage
    from genai_prices import calc_price

    lookups = [{"provider_id": provider}]
    if base_url:
        lookups.append({"provider_api_url": base_url})
    for where in lookups:
        try:
            calc_price(CatalogueUsage(input_tokens=1), model, **where)  # type: ignore[call-overload]
        except LookupError:
            continue
        return where
    return None
