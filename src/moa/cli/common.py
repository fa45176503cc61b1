"""What `moa batch` and `moa eval` share: options, consoles, the run summaries."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from moa.errors import RunError

if TYPE_CHECKING:
    from rich.console import Console

    from moa.batch.items import BatchStats

# The option types are read whenever the command line is built (even for `moa --help`), so this
# module imports only typer; rich loads with the first line printed, the engine with
# `moa.cli.session` when a command runs.


@cache
def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


@cache
def stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


RecipeOpt = Annotated[
    str, typer.Option("--recipe", "-r", help="Built-in recipe name or path to a .toml file.")
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-c", help="Prompts in flight at once.", min=1)
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="Response cache: a file (default $MOA_CACHE or ~/.cache/moa), or "
        "redis://HOST:PORT/DB?ttl=SECONDS to share one between hosts.",
    ),
]
RedisOpt = Annotated[
    str | None,
    typer.Option(
        "--redis",
        envvar="MOA_REDIS_URL",
        help="Share rate limits with every process on this Redis (redis://HOST:PORT/DB).",
    ),
]
RedisOptionalOpt = Annotated[
    bool,
    typer.Option(
        "--redis-optional",
        envvar="MOA_REDIS_OPTIONAL",
        help="If Redis is unreachable at start, warn and use per-process limits until it is.",
    ),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", help="Only the first N.", min=1)]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Benchmark data folder with alpaca_eval/ and mt_bench/ "
        "(default $MOA_DATA_DIR, else the data shipped with moa).",
    ),
]
ProposerOpt = Annotated[
    list[str] | None,
    typer.Option("--proposer", "-p", help="Proposer MODEL as provider:model (repeatable)."),
]
TemperatureOpt = Annotated[float | None, typer.Option(help="Temperature for every call.")]


def _top_p(value: float | None) -> float | None:
    # OpenAI's range, 0 to 1 (0 keeps only the likeliest token).
    if value is not None and not 0 <= value <= 1:
        raise typer.BadParameter(f"{value:g} is out of range — give a number from 0 to 1")
    return value


TopPOpt = Annotated[
    float | None,
    typer.Option("--top-p", help="top_p (nucleus sampling) for every call.", callback=_top_p),
]
MaxTokensOpt = Annotated[
    int | None, typer.Option("--max-tokens", help="max_tokens for every call.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def console_for(quiet: bool) -> Console | None:
    return None if quiet else stderr()


def report(stats: BatchStats, what: str) -> None:
    from rich.markup import escape

    err = stderr()
    tokens = f"{stats.usage.input_tokens:,} in / {stats.usage.output_tokens:,} out tokens"
    tokens += f" · {stats.cost_text()}"
    line = f"{what}: {stats.done} done, {stats.skipped} already done"
    if stats.degraded:
        line += f", [yellow]{stats.degraded} degraded[/yellow]"
    if stats.failures:
        line += f", [red]{len(stats.failures)} failed[/red]"
    err.print(f"{line} · {tokens}")
    if stats.truncated_bytes:
        err.print(f"  resumed after cutting a partial last line ({stats.truncated_bytes} bytes)")
    for item_id, message in stats.failures[:5]:
        err.print(f"  [red]✗[/red] {escape(str(item_id))}: {escape(message)}", soft_wrap=True)


def check_failures(*all_stats: BatchStats) -> None:
    from moa.pricing import format_usd

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


PollOpt = Annotated[
    float,
    typer.Option("--poll-every", metavar="SECONDS", help="With --batch-api: poll jobs this often."),
]
