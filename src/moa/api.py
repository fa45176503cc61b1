"""One-liners: `moa.run("…")`, `await moa.arun("…")`, `async for event in moa.stream("…")`.

Each takes the same keyword options as `MoA.stream / arun / run` (`moa.engine.options.Options`:
sampling, aggregator_sampling, max_cost_usd, answering, tools).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Unpack

from moa import recipes
from moa.engine.mixture import MoA
from moa.engine.options import Options, Prompt, RunOptions
from moa.events import Event
from moa.recipes.schema import Recipe
from moa.trace import Result

RecipeRef = str | Path | Recipe | MoA


def _moa(recipe: RecipeRef) -> MoA:
    if isinstance(recipe, MoA):
        return recipe
    return recipes.build(recipe if isinstance(recipe, Recipe) else recipes.load(recipe))


async def stream(
    prompt: Prompt, *, recipe: RecipeRef = "local", **options: Unpack[Options]
) -> AsyncIterator[Event]:
    """Events of one run: proposals started/finished/failed, aggregator tokens (and tool-call
    deltas, when `tools` are given), then Done."""
    moa = _moa(recipe)
    try:
        async for event in moa.events(prompt, RunOptions.of(**options)):
            yield event
    finally:
        if moa is not recipe:
            await moa.aclose()


async def arun(
    prompt: Prompt, *, recipe: RecipeRef = "local", **options: Unpack[Options]
) -> Result:
    moa = _moa(recipe)
    try:
        return await moa.result(prompt, RunOptions.of(**options))
    finally:
        if moa is not recipe:
            await moa.aclose()


def run(prompt: Prompt, *, recipe: RecipeRef = "local", **options: Unpack[Options]) -> Result:
    """Answer `prompt` (a string or a chat history) with a recipe; blocks until done. With
    `tools`, the aggregator may answer with calls instead (`Result.tool_calls`)."""
    return asyncio.run(arun(prompt, recipe=recipe, **options))
