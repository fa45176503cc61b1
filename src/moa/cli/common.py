"""What `moa batch` and `moa eval` share: options, the cache session, the run summaries."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from moa import recipes
from moa.cache import ResponseCache, default_path
from moa.engine import MoA
from moa.errors import RunError
from moa.evaluation.batch import BatchStats
from moa.evaluation.judge import Judge
from moa.pricing import PriceBook, format_usd
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)

RecipeOpt = Annotated[
    str, typer.Option("--recipe", "-r", help="Built-in recipe name or path to a .toml file.")
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-c", help="Prompts in flight at once.", min=1)
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Response cache file (default $MOA_CACHE or ~/.cache/moa)."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", help="Only the first N.", min=1)]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Benchmark data folder (default $MOA_DATA_DIR, ../shared/data)."
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def console_for(quiet: bool) -> Console | None:
    return None if quiet else err


@asynccontextmanager
async def open_session(no_cache: bool, cache_path: Path | None) -> AsyncIterator[Session]:
    opened = Session(None if no_cache else ResponseCache(cache_path or default_path()))
    try:
        yield opened
    finally:
        await opened.registry.aclose()
        if opened.cache is not None:
            opened.cache.close()


class Session:
    """The cache and one registry (one client and one set of rate limits per provider, shared
    by the recipes, the baseline and the judge), closed together."""

    def __init__(self, cache: ResponseCache | None) -> None:
        self.cache = cache
        self.registry = Registry()
        self._recipes: list[Recipe] = []

    def _share(self, recipe: Recipe) -> None:
        if recipe not in self._recipes:
            recipes.check_shared_providers([*self._recipes, recipe])
            self._recipes.append(recipe)

    def build(self, recipe: Recipe) -> MoA:
        self._share(recipe)
        return recipes.build(recipe, self.registry, cache=self.cache)

    def judge(self, model: str, sources: Sequence[Recipe], max_tokens: int) -> Judge:
        """A judge whose provider may be a built-in one or any declared in the recipes."""
        for recipe in sources:
            self._share(recipe)
            recipes.register_providers(recipe, self.registry)
        prices = PriceBook(base_urls=recipes.endpoints(self.registry))
        return Judge(model, self.registry, max_tokens=max_tokens, cache=self.cache, prices=prices)

    def cache_note(self) -> str:
        if self.cache is None:
            return "cache off"
        return f"cache {self.cache.hits} hits / {self.cache.misses} misses"


def report(stats: BatchStats, what: str) -> None:
    tokens = f"{stats.usage.input_tokens:,} in / {stats.usage.output_tokens:,} out tokens"
    tokens += f" · {stats.cost_text()}"
    line = f"{what}: {stats.done} done, {stats.skipped} already done"
    if stats.failures:
        line += f", [red]{len(stats.failures)} failed[/red]"
    err.print(f"{line} · {tokens}")
    if stats.truncated_bytes:
        err.print(f"  resumed after cutting a partial last line ({stats.truncated_bytes} bytes)")
    for item_id, message in stats.failures[:5]:
        err.print(f"  [red]✗[/red] {escape(str(item_id))}: {escape(message)}", soft_wrap=True)


def check_failures(*all_stats: BatchStats) -> None:
    failed = sum(len(s.failures) for s in all_stats)
    if failed:
        raise RunError(f"{failed} item(s) failed; rerun the same command to retry only those")
    for stats in all_stats:
        if stats.not_started and stats.budget_usd is not None:
            finished = stats.skipped + stats.done
            raise RunError(
                f"budget of {format_usd(stats.budget_usd)} reached: {finished} of {stats.total} "
                f"done ({stats.cost_text()} spent by this run), {stats.not_started} not started "
                f"— rerun the same command to continue with them"
            )
