"""`moa batch INPUT.jsonl -o OUTPUT.jsonl`: many prompts, resumable, crash-safe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from moa.batch.items import Item
    from moa.recipes.schema import Recipe
    from moa.types import Sampling

from moa.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    MaxTokensOpt,
    NoCacheOpt,
    PollOpt,
    ProposerOpt,
    QuietOpt,
    RecipeOpt,
    RedisOpt,
    RedisOptionalOpt,
    TemperatureOpt,
    TopPOpt,
    check_failures,
    console_for,
    report,
    stderr,
)
from moa.cli.guard import fail, run_guarded
from moa.cli.queue import QueueOpt, VisibilityOpt
from moa.errors import ConfigError, RunError

_AggregatorOpt = Annotated[
    str | None,
    typer.Option("--aggregator", "-a", help="Aggregator MODEL (seeded proposals are reused)."),
]
_BudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--budget",
        help="Stop starting prompts once the USD spent plus the worst case of those in "
        "flight would pass this; a rerun continues.",
    ),
]
_ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Answer only shard K of N (split by id) into OUTPUT.K-of-N.jsonl; "
        "join the shards with `moa batch merge -o OUTPUT`.",
    ),
]


_BatchAPIOpt = Annotated[
    bool,
    typer.Option(
        "--batch-api",
        help="Send each layer's calls as provider Batch API jobs (about half the price, "
        "answers within the provider's window); a rerun resumes the same jobs.",
    ),
]
_RealtimeFallbackOpt = Annotated[
    bool,
    typer.Option(
        "--realtime-fallback",
        help="With --batch-api: send the requests an expired or cancelled job left unrun "
        "real-time (default: resubmit them as a new job).",
    ),
]


def batch(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT.jsonl", help="id + prompt/messages")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Results JSONL (appended).")],
    recipe: RecipeOpt = "local",
    proposer: ProposerOpt = None,
    aggregator: _AggregatorOpt = None,
    concurrency: ConcurrencyOpt = 4,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    max_tokens: MaxTokensOpt = None,
    budget: _BudgetOpt = None,
    quiet: QuietOpt = False,
    redis: RedisOpt = None,
    redis_optional: RedisOptionalOpt = False,
    shard: _ShardOpt = None,
    queue: QueueOpt = None,
    visibility_timeout: VisibilityOpt = 30.0,
    batch_api: _BatchAPIOpt = False,
    realtime_fallback: _RealtimeFallbackOpt = False,
    poll_every: PollOpt = 30.0,
) -> None:
    """Answer every prompt of INPUT.jsonl; rerun the same command to resume after a crash.
    `moa batch merge -o OUTPUT` joins the outputs of `--shard K/N` runs; `moa batch cancel
    OUTPUT` cancels the Batch API jobs of a `--batch-api` run."""
    if batch_api and queue is not None:
        raise fail(2, "--batch-api runs from one process: it does not go with --queue")
    prompts = _Prompts(
        input_path,
        output,
        recipe,
        proposer,
        aggregator,
        temperature,
        max_tokens,
        top_p,
        budget,
        quiet,
        shard,
    )
    if batch_api:
        return _batch_api(prompts, realtime_fallback, poll_every)
    if realtime_fallback:
        raise fail(2, "--realtime-fallback is for --batch-api runs")
    shared = (no_cache, cache, redis, redis_optional)

    async def main() -> None:
        items, out, loaded, sampling = prompts.load()
        if queue is None:
            await _here(items, out, loaded, sampling, (concurrency, quiet, budget), shared)
            return
        from moa.batch.queued import QueuedRun
        from moa.cli.queue import QueueOptions, batch_on_queue

        where = QueueOptions(queue, visibility_timeout, concurrency, quiet, shard, budget)
        await batch_on_queue(items, out, QueuedRun(loaded, sampling, no_cache), where, shared)

    run_guarded(main)


@dataclass(frozen=True, slots=True)
class _Prompts:
    """What every way of answering a batch (here, on a queue, by Batch API jobs) reads of the
    command line."""

    input_path: Path
    output: Path
    recipe: str
    proposer: list[str] | None
    aggregator: str | None
    temperature: float | None
    max_tokens: int | None
    top_p: float | None
    budget: float | None
    quiet: bool
    shard: str | None

    def load(self) -> tuple[list[Item], Path, Recipe, Sampling]:
        """This shard's prompts and its output, the recipe with the command line's models, the
        sampling; a budget that is not a positive amount is refused."""
        from moa import recipes
        from moa.batch.items import load_input
        from moa.batch.shard import pick
        from moa.cli.options import apply_overrides
        from moa.types import Sampling

        items, out = pick(load_input(self.input_path), self.output, self.shard)
        loaded = apply_overrides(
            recipes.load(self.recipe), proposers=self.proposer, aggregator=self.aggregator
        )
        if self.budget is not None and self.budget <= 0:
            raise ConfigError("--budget must be a positive amount of USD")
        sampling = Sampling(
            temperature=self.temperature, max_tokens=self.max_tokens, top_p=self.top_p
        )
        return items, out, loaded, sampling


async def _here(
    items: Sequence[Item],
    out: Path,
    loaded: Recipe,
    sampling: Sampling,
    how: tuple[int, bool, float | None],
    shared: tuple[bool, str | None, str | None, bool],
) -> None:
    """The prompts answered by this process alone (no queue, no Batch API)."""
    from moa.batch.items import answer_job, run_items, worst_case_budget
    from moa.cli.session import open_session

    concurrency, quiet, budget = how
    async with open_session(*shared) as session:
        mixture = session.build(loaded)
        stats = await run_items(
            items,
            answer_job(mixture, sampling, recipe=loaded.name),
            out,
            concurrency=concurrency,
            console=console_for(quiet),
            label=loaded.name,
            budget=worst_case_budget(budget, mixture, sampling),
        )
        report(stats, f"{out}")
        stderr().print(f"  {session.cache_note()}")
    check_failures(stats)


def batch_merge(
    output: Annotated[Path, typer.Option("--output", "-o", help="The joined JSONL (appended).")],
    shards: Annotated[
        list[Path] | None,
        typer.Argument(metavar="[SHARD.jsonl]...", help="Default: all OUTPUT.K-of-N.jsonl."),
    ] = None,
    input_path: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="The batch input: keep its order, name missing ids."),
    ] = None,
) -> None:
    """Join the outputs of `moa batch --shard K/N` into one file (rerun-safe)."""

    async def main() -> None:
        from moa.batch.items import load_input
        from moa.batch.shard import find_shards, merge

        items = load_input(input_path) if input_path is not None else []
        merged = merge(output, shards or find_shards(output), items)
        stderr().print(f"{output}: {merged.written} merged, {merged.already} already there")
        if merged.missing:
            shown = ", ".join(repr(i) for i in merged.missing[:5])
            raise RunError(
                f"{len(merged.missing)} input id(s) are in no shard output ({shown}); rerun "
                f"their shards, then merge again"
            )

    run_guarded(main)


def _batch_api(prompts: _Prompts, realtime_fallback: bool, poll_every: float) -> None:
    written = [prompts.output]  # the file this run appends to (a shard's own)

    async def main() -> None:
        from moa import recipes
        from moa.batch.batch_api.run import cost_lines, run_batch_api

        items, out, loaded, sampling = prompts.load()
        written[0] = out
        if poll_every <= 0:
            raise ConfigError("--poll-every must be a positive number of seconds")
        # No response cache: a Batch API answer is paid once and kept beside the output.
        async with recipes.build(loaded) as mixture:
            stats = await run_batch_api(
                items,
                mixture,
                out,
                sampling=sampling,
                console=console_for(prompts.quiet),
                recipe=loaded.name,
                poll_s=poll_every,
                realtime_fallback=realtime_fallback,
                budget_usd=prompts.budget,
            )
        report(stats, f"{out}")
        for line in cost_lines(stats):
            stderr().print(f"  {line}")
        check_failures(stats)

    try:
        run_guarded(main)
    except typer.Exit as stopped:
        if stopped.exit_code == 130:  # Ctrl-C stopped this process, not the provider's jobs
            stderr().print(
                f"  Batch API jobs it sent go on at the provider: rerun the same command to "
                f"pick them up, or stop them with `moa batch cancel {written[0]}`"
            )
        raise


def batch_cancel(
    output: Annotated[Path, typer.Argument(metavar="OUTPUT.jsonl", help="A --batch-api output.")],
) -> None:
    """Cancel the Batch API jobs of a `moa batch --batch-api` run that are still running."""

    async def main() -> None:
        from moa.batch.batch_api import cancel_jobs

        cancelled = await cancel_jobs(output)
        for job_id, status in cancelled:
            stderr().print(f"{job_id}: {status}")
        stderr().print(f"{output}: {len(cancelled)} job(s) cancelled")

    run_guarded(main)
