"""The cache and registry a `moa batch` / `moa eval` command shares across its recipes.

Imported when such a command runs, not when the command line is built (start-up time)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from moa import recipes
from moa.engine.mixture import MoA
from moa.evaluation.judge import Judge
from moa.policies.cache import Cache, ResponseCache, default_path
from moa.pricing import PriceBook
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe

if TYPE_CHECKING:
    from moa.policies.redis.cache import RedisCache


def open_cache(no_cache: bool, where: str | None) -> ResponseCache | RedisCache | None:
    if no_cache:
        return None
    if where and where.startswith(("redis://", "rediss://", "unix://")):
        from moa.policies.redis.cache import RedisCache
        from moa.policies.redis.link import check

        cache = RedisCache(where)
        check(cache.url)
        return cache
    return ResponseCache(Path(where) if where else default_path())


@asynccontextmanager
async def open_session(
    no_cache: bool,
    cache: str | None,
    redis: str | None = None,
    redis_optional: bool = False,
) -> AsyncIterator[Session]:
    opened = Session(open_cache(no_cache, cache))
    link = None
    if redis:
        from moa.policies.redis import share_limits

        link = share_limits(opened.registry.limits, redis, optional=redis_optional)
    try:
        yield opened
    finally:
        await opened.registry.aclose()
        if link is not None:
            await link.aclose()
        if opened.cache is not None:
            await opened.cache.aclose()


class Session:
    """The cache and one registry (one client and one set of rate limits per provider, shared
    by the recipes, the baseline and the judge), closed together."""

    def __init__(self, cache: ResponseCache | RedisCache | None) -> None:
        self.cache = cache
        self._cache: Cache | None = cache  # either one, as the engine takes it
        self.registry = Registry()
        self._recipes: list[Recipe] = []

    def _share(self, recipe: Recipe) -> None:
        if recipe not in self._recipes:
            recipes.check_shared_providers([*self._recipes, recipe])
            self._recipes.append(recipe)

    def build(self, recipe: Recipe) -> MoA:
        self._share(recipe)
        return recipes.build(recipe, self.registry, cache=self._cache)

    def judge(self, model: str, sources: Sequence[Recipe], max_tokens: int) -> Judge:
        """A judge whose provider may be a built-in one or any declared in the recipes."""
        for recipe in sources:
            self._share(recipe)
            recipes.register_providers(recipe, self.registry)
        prices = PriceBook(base_urls=recipes.endpoints(self.registry))
        return Judge(model, self.registry, max_tokens=max_tokens, cache=self._cache, prices=prices)

    def cache_note(self) -> str:
        if self.cache is None:
            return "cache off"
        return f"cache {self.cache.hits} hits / {self.cache.misses} misses"
