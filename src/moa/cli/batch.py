"""`moa batch INPUT.jsonl -o OUTPUT.jsonl`: many prompts, resumable, crash-safe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moa import recipes
from moa.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    NoCacheOpt,
    QuietOpt,
    RecipeOpt,
    check_failures,
    console_for,
    err,
    open_session,
    report,
)
from moa.cli.guard import run_guarded
from moa.cli.options import apply_overrides
from moa.evaluation.batch import answer_job, load_input, run_items
from moa.types import Sampling


def batch(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT.jsonl", help="id + prompt/messages")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Results JSONL (appended).")],
    recipe: RecipeOpt = "local",
    proposer: Annotated[
        list[str] | None,
        typer.Option("--proposer", "-p", help="Proposer MODEL as provider:model (repeatable)."),
    ] = None,
    aggregator: Annotated[
        str | None,
        typer.Option("--aggregator", "-a", help="Aggregator MODEL (seeded proposals are reused)."),
    ] = None,
    concurrency: ConcurrencyOpt = 4,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    temperature: Annotated[float | None, typer.Option(help="Temperature for every call.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="max_tokens for every call.")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Answer every prompt of INPUT.jsonl; rerun the same command to resume after a crash."""

    async def main() -> None:
        items = load_input(input_path)
        loaded = apply_overrides(recipes.load(recipe), proposers=proposer, aggregator=aggregator)
        async with open_session(no_cache, cache) as session:
            mixture = session.build(loaded)
            job = answer_job(
                mixture,
                Sampling(temperature=temperature, max_tokens=max_tokens),
                recipe=loaded.name,
            )
            stats = await run_items(
                items,
                job,
                output,
                concurrency=concurrency,
                console=console_for(quiet),
                label=loaded.name,
            )
            report(stats, f"{output}")
            err.print(f"  {session.cache_note()}")
        check_failures(stats)

    run_guarded(main)
