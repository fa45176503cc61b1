"""Recipes: a MoA described in TOML, the built-in ones, and turning one into a `MoA`.

Above the engine: may import the engine and everything below it; the faces (CLI, server,
evaluation) read recipes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from moa.call.agent import Agent
from moa.engine.aggregator import Aggregator
from moa.engine.layer import ProposalLayer
from moa.errors import RecipeError, UnpricedModelError
from moa.policies.ratelimit import RateLimit
from moa.policies.retry import RetryPolicy
from moa.pricing import Price, PriceBook
from moa.providers.base import BatchAPI
from moa.providers.registry import ProviderConfig, Registry
from moa.recipes.schema import (
    AggregatorSpec,
    BatchAPISpec,
    ModelSpec,
    ProviderSpec,
    Recipe,
    SamplingSpec,
)
from moa.types import Sampling, Usage

if TYPE_CHECKING:  # the engine loads with the first `build`, not for `moa recipes`
    from moa.engine.mixture import MoA
    from moa.policies.cache import Cache

__all__ = [
    "Recipe",
    "build",
    "builtin_names",
    "builtin_text",
    "check_shared_providers",
    "load",
    "parse",
    "price_book",
    "register_providers",
]

_BUILTIN = resources.files("moa.recipes").joinpath("builtin")


def builtin_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in _BUILTIN.iterdir() if p.name.endswith(".toml")
    )


def builtin_text(name: str) -> str:
    path = _BUILTIN.joinpath(f"{name}.toml")
    if not path.is_file():
        raise RecipeError(
            f"unknown recipe {name!r} — built-ins are {', '.join(builtin_names())} "
            f"(`moa recipes` lists them), or pass a path to a .toml file"
        )
    return path.read_text(encoding="utf-8")


def parse(text: str, source: str = "<recipe>") -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{source}: {_describe(exc)}") from None


def load(name_or_path: str | Path) -> Recipe:
    """A built-in recipe by name, or a recipe file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RecipeError(f"cannot read recipe {path}: {exc.strerror}") from None
        return parse(text, str(path))
    return parse(builtin_text(str(name_or_path)), f"recipe {name_or_path!r}")


def build(recipe: Recipe, registry: Registry | None = None, *, cache: Cache | None = None) -> MoA:
    """Turn a validated recipe into a ready `MoA` (providers resolved, keys checked); with a
    `cache`, its reproducible calls are answered from there when they can be."""
    from moa.engine.mixture import MoA

    registry = registry or Registry()
    register_providers(recipe, registry)
    layers = [
        ProposalLayer(
            *(_agent(m) for m in layer.models),
            prompt=layer.prompt or recipe.prompt,
            min_proposals=layer.min_proposals,
            deadline_s=layer.deadline_s,
            stop_when=layer.stop_when,
            agree=layer.agree,
            filter=layer.filter,
            adaptive=layer.adaptive,
            first_round=layer.first_round,
            round_size=layer.round_size,
            stop_share=layer.stop_share,
        )
        for layer in recipe.layers
        for _ in range(layer.repeat)
    ]
    spec = recipe.aggregator
    aggregator = Aggregator(
        _agent(ModelSpec(**spec.model_dump(include=set(ModelSpec.model_fields) - {"price"}))),
        prompt=spec.prompt or recipe.prompt,
        fallbacks=[_agent(m) for m in spec.fallbacks],
        strategy=spec.strategy,
        top_k=spec.top_k,
        window=spec.window,
        staircase=spec.staircase,
        chunk_tokens=spec.chunk_tokens,
        chunk_growth=spec.chunk_growth,
        reply=spec.reply,
    )
    mixture = MoA(
        *layers,
        aggregator,
        registry=registry,
        defaults=_sampling(recipe.defaults),
        timeout_s=recipe.timeout_s,
        retry=RetryPolicy(**recipe.retry.model_dump()),
        cache=cache,
        prices=price_book(recipe, registry),
        max_cost_usd=recipe.max_cost_usd,
        on_degraded=recipe.on_degraded,
        invocation=recipe.invocation,
        name=recipe.name,
    )
    if recipe.max_cost_usd is not None:
        # A budget needs every price: say so now, not on the first run.
        for agent in mixture.agents:
            if mixture.prices.cost(agent.model, Usage(1, 1)) is None:
                raise UnpricedModelError(agent.model)
    return mixture


def price_book(recipe: Recipe, registry: Registry | None = None) -> PriceBook:
    """The recipe's `price` overrides by model, and its providers' endpoints (the catalogue
    also knows providers by URL)."""
    specs: list[str | ModelSpec | AggregatorSpec] = [
        m for layer in recipe.layers for m in layer.models
    ]
    specs += [recipe.aggregator, *recipe.aggregator.fallbacks]
    overrides: dict[str, Price] = {}
    for spec in specs:
        if isinstance(spec, str) or spec.price is None:
            continue
        price = Price(spec.price.input, spec.price.output)
        if overrides.setdefault(spec.model, price) != price:
            raise RecipeError(f"{spec.model} is given two different prices; give it one")
    urls = {name: p.base_url for name, p in recipe.providers.items() if p.base_url}
    if registry is not None:
        urls = {**endpoints(registry), **urls}
    return PriceBook(overrides, urls)


def endpoints(registry: Registry) -> dict[str, str]:
    """Each provider's base URL, by name."""
    configs = (registry.config(name) for name in registry.names)
    return {c.name: c.base_url for c in configs if c is not None}


def check_shared_providers(recipes: Sequence[Recipe]) -> None:
    """Recipes that will share one registry must not declare a provider differently."""
    declared: dict[str, tuple[str, ProviderSpec]] = {}
    for recipe in recipes:
        for provider, spec in recipe.providers.items():
            first, earlier = declared.setdefault(provider, (recipe.name, spec))
            if earlier != spec:
                raise RecipeError(
                    f"recipes {first!r} and {recipe.name!r} declare provider {provider!r} "
                    f"differently; give one of them another provider name"
                )


def register_providers(recipe: Recipe, registry: Registry) -> None:
    """Add the recipe's `[providers.NAME]` and `[rate_limits]` to a registry."""
    for name, provider in recipe.providers.items():
        registry.add(_provider_config(name, provider, registry.config(name)))
    for key, limit in recipe.rate_limits.items():
        registry.limits.configure(key, RateLimit(limit.rpm, limit.tpm, limit.max_concurrency))


def _provider_config(
    name: str, spec: ProviderSpec, builtin: ProviderConfig | None
) -> ProviderConfig:
    if spec.base_url is None and builtin is None:
        raise RecipeError(
            f"providers.{name}: base_url is required for a provider moa does not know"
        )
    base = builtin or ProviderConfig(name, spec.base_url or "")
    limit = base.rate_limit
    declared: dict[str, Any] = {
        key: value
        for key in (
            "tools",
            "json_schema",
            "logprobs",
            "n",
            "continuation",
            "seed",
            "stream_usage",
            "system_turns",
            "top_k",
        )
        if (value := getattr(spec, key)) is not None
    }
    if spec.batch_api is not None:
        declared["batch_api"] = _batch_api(spec.batch_api, base.capabilities.batch_api)
    return ProviderConfig(
        name,
        spec.base_url or base.base_url,
        spec.api_key_env if "api_key_env" in spec.model_fields_set else base.api_key_env,
        spec.timeout_s if spec.timeout_s is not None else base.timeout_s,
        replace(base.capabilities, **declared),
        RateLimit(
            spec.rpm or limit.rpm,
            spec.tpm or limit.tpm,
            spec.max_concurrency or limit.max_concurrency,
        ),
        RetryPolicy(**spec.retry.model_dump()) if spec.retry else base.retry,
    )


def _batch_api(spec: bool | BatchAPISpec, builtin: BatchAPI | None) -> BatchAPI | None:
    if spec is False:
        return None
    base = builtin or BatchAPI()
    if spec is True:
        return base
    given = {k: v for k, v in spec.model_dump().items() if v is not None}
    return replace(base, **given)


def _sampling(spec: SamplingSpec) -> Sampling:
    return Sampling(
        temperature=spec.temperature,
        max_tokens=spec.max_tokens,
        seed=spec.seed,
        stop=tuple(spec.stop) if spec.stop is not None else None,
        top_p=spec.top_p,
    )


def _agent(spec: str | ModelSpec) -> Agent:
    if isinstance(spec, str):
        return Agent(spec)
    return Agent(
        spec.model,
        _sampling(spec),
        spec.system,
        spec.system_role,
        spec.context_window,
        spec.timeout_s,
        spec.samples,
        tuple(spec.examples),
        spec.answer_pattern,
        spec.required,
    )


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if not _is_union_tag(p)) or "(top level)"
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{where}: {reason}")
    return "; ".join(dict.fromkeys(problems))


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in ("str", "ModelSpec") or part.startswith("function-"))
