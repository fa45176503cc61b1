"""One-liners: `moa.run("…")`, `await moa.arun("…")`, `async for event in moa.stream("…")`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from moa import recipes
from moa.engine.mixture import MoA
from moa.engine.run import Prompt, ToolList
from moa.events import Event
from moa.recipes.schema import Recipe
from moa.trace import Result
from moa.types import Sampling

RecipeRef = str | Path | Recipe | MoA


def _moa(recipe: RecipeRef) -> MoA:
    if isinstance(recipe, MoA):
        return recipe
    return recipes.build(recipe if isinstance(recipe, Recipe) else recipes.load(recipe))


async def stream(
    prompt: Prompt,
    *,
    recipe: RecipeRef = "local",
    sampling: Sampling | None = None,
    tools: ToolList | None = None,
) -> AsyncIterator[Event]:
    """Events of one run: proposals started/finished/failed, aggregator tokens (and tool-call
    deltas, when `tools` are given), then Done."""
    moa = _moa(recipe)
    try:
        async for event in moa.stream(prompt, sampling=sampling, tools=tools):
            yield event
    finally:
        if moa is not recipe:
            await moa.aclose()


async def arun(
    prompt: Prompt,
    *,
    recipe: RecipeRef = "local",
    sampling: Sampling | None = None,
    tools: ToolList | None = None,
) -> Result:
    moa = _moa(recipe)
    try:
        return await moa.arun(prompt, sampling=sampling, tools=tools)
    finally:
        if moa is not recipe:
            await moa.aclose()


def run(
    prompt: Prompt,
    *,
    recipe: RecipeRef = "local",
    sampling: Sampling | None = None,
    tools: ToolList | None = None,
) -> Result:
    """Answer `prompt` (a string or a chat history) with a recipe; blocks until done. With
    `tools`, the aggregator may answer with calls instead (`Result.tool_calls`)."""
    return asyncio.run(arun(prompt, recipe=recipe, sampling=sampling, tools=tools))
