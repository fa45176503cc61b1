"""`moa batch --queue URL`, `moa worker --queue URL` and `moa queue status|clear URL`: one
batch answered by workers on many hosts through a work queue on Redis (moa.batch.queue.work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from moa.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    NoCacheOpt,
    QuietOpt,
    RedisOptionalOpt,
    check_failures,
    report,
    stderr,
    stdout,
)
from moa.cli.guard import run_guarded

if TYPE_CHECKING:
    from collections.abc import Sequence

    from moa.batch.items import Item
    from moa.batch.queue.work import Status
    from moa.batch.queued import QueuedRun
    from moa.batch.worker import Worker

queue_app = typer.Typer(help="See or remove a work queue of `moa batch --queue`.")

QueueOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        metavar="redis://HOST:PORT/DB",
        help="Put the prompts on this work queue and answer them with every `moa worker` on "
        "it (?name=NAME picks one of several queues on one Redis).",
    ),
]
VisibilityOpt = Annotated[
    float,
    typer.Option(
        "--visibility-timeout",
        help="With --queue: seconds a worker may go silent before others take its prompts.",
    ),
]
_QueueArg = Annotated[str, typer.Argument(metavar="redis://HOST:PORT/DB", help="The queue.")]
_WorkerRedisOpt = Annotated[
    str | None,
    typer.Option(
        "--redis",
        envvar="MOA_REDIS_URL",
        help="Share rate limits on this Redis (default: the queue's own Redis).",
    ),
]


@dataclass(frozen=True, slots=True)
class QueueOptions:
    url: str
    visibility_s: float
    concurrency: int
    quiet: bool
    shard: str | None = None  # refused: the queue splits the work itself
    budget: float | None = None  # refused: not kept across workers yet


async def batch_on_queue(
    items: Sequence[Item],
    output: Path,
    run: QueuedRun,
    options: QueueOptions,
    session_options: tuple[bool, str | None, str | None, bool],
) -> None:
    """Enqueue, work like any worker until every prompt is answered, then write OUTPUT."""
    from moa.batch.items import BatchStats, answer_job
    from moa.batch.jsonl import AppendLog
    from moa.batch.queue.work import WorkQueue
    from moa.batch.queued import collect, enqueue
    from moa.batch.worker import Worker
    from moa.cli.session import open_session
    from moa.errors import ConfigError

    refused = {"--shard": options.shard, "--budget": options.budget}
    given = [option for option, value in refused.items() if value is not None]
    if given:
        raise ConfigError(
            f"{' and '.join(given)} cannot go with --queue: the queue spreads the prompts over "
            f"its workers itself, and a budget is not kept across workers yet"
        )
    queue = WorkQueue(options.url)
    no_cache, cache, redis, redis_optional = session_options
    try:
        with AppendLog(output) as log:
            todo = [i for i in items if i.id not in log]
            stats = BatchStats(total=len(items), skipped=len(items) - len(todo))
            stats.truncated_bytes = log.truncated_bytes
            added = await enqueue(queue, run, todo, options.visibility_s)
            stderr().print(
                f"{queue.where}: {added} prompt(s) queued, {len(todo) - added} already there"
            )
            limits_on = redis or queue.redis_url
            async with open_session(no_cache, cache, limits_on, redis_optional) as session:
                mixture = session.build(run.recipe)
                job = answer_job(mixture, run.sampling, recipe=run.recipe.name)
                worker = Worker(
                    queue, job, visibility_s=options.visibility_s, concurrency=options.concurrency
                )
                await _work_with_progress(worker, len(todo), options.quiet)
                await collect(queue, todo, log, stats)
            report(stats, f"{output}")
            stderr().print(f"  {session.cache_note()} · {_worker_note(worker)}")
    finally:
        await queue.aclose()
    check_failures(stats)


async def _work_with_progress(worker: Worker, total: int, quiet: bool) -> None:
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    queue = worker.queue
    columns = ("[bold]queue", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr(), disable=quiet) as bar:
        task = bar.add_task("queue", total=total)

        async def follow() -> None:
            while True:
                left = await queue.outstanding()
                bar.update(task, completed=max(0, total - left))
                await asyncio.sleep(0.5)

        follower = asyncio.create_task(follow())
        try:
            await worker.run()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        bar.update(task, completed=total)


def _worker_note(worker: Worker) -> str:
    s = worker.stats
    note = f"this process answered {s.answered}"
    if s.claimed:
        note += f", took over {s.claimed} from silent workers"
    if s.second:
        note += f", {s.second} answered twice (second answer dropped)"
    return note


def worker(
    queue_url: Annotated[
        str,
        typer.Option("--queue", metavar="redis://HOST:PORT/DB", help="The queue to work on."),
    ],
    concurrency: ConcurrencyOpt = 4,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    redis: _WorkerRedisOpt = None,
    redis_optional: RedisOptionalOpt = False,
    max_deliveries: Annotated[
        int, typer.Option(help="Fail a prompt taken this many times by workers that died.", min=1)
    ] = 5,
    quiet: QuietOpt = False,
) -> None:
    """Answer prompts of a `moa batch --queue` run with the recipe the queue carries (no
    recipe file needed; API keys come from this host's environment). Exits when the run has
    no prompt left."""

    async def main() -> None:
        from moa.batch.items import answer_job
        from moa.batch.queue.work import WorkQueue
        from moa.batch.queued import QueuedRun
        from moa.batch.worker import Worker
        from moa.cli.session import open_session
        from moa.errors import ConfigError

        queue = WorkQueue(queue_url)
        try:
            found = await queue.run()
            if found is None:
                raise ConfigError(
                    f"no run on the queue at {queue.where}; start one with "
                    f"`moa batch INPUT -o OUTPUT --queue {queue_url}`"
                )
            run = QueuedRun.of(found)
            limits_on = redis or queue.redis_url
            skip_cache = no_cache or run.no_cache
            async with open_session(skip_cache, cache, limits_on, redis_optional) as session:
                mixture = session.build(run.recipe)  # a missing key fails here, in one line
                job = answer_job(mixture, run.sampling, recipe=run.recipe.name)
                agent = Worker(
                    queue,
                    job,
                    visibility_s=found.visibility_s,
                    concurrency=concurrency,
                    max_deliveries=max_deliveries,
                )
                if not quiet:
                    stderr().print(f"worker {agent.name} on {queue.where}: {run.recipe.name}")
                stats = await agent.run()
            line = f"{agent.name}: {_worker_note(agent)}, {stats.failed} failed"
            stderr().print(f"{line} · {session.cache_note()}")
        finally:
            await queue.aclose()

    run_guarded(main)


@queue_app.command("status")
def queue_status(url: _QueueArg) -> None:
    """Progress of the run on a queue, and its workers (working, idle, dead, left)."""

    async def main() -> None:
        from moa.batch.queue.work import WorkQueue

        queue = WorkQueue(url)
        try:
            _print_status(await queue.status())
        finally:
            await queue.aclose()

    run_guarded(main)


@queue_app.command("clear")
def queue_clear(url: _QueueArg) -> None:
    """Remove a queue: its run, prompts and answers (collected outputs stay as they are)."""

    async def main() -> None:
        from moa.batch.queue.work import WorkQueue

        queue = WorkQueue(url)
        try:
            removed = await queue.clear()
        finally:
            await queue.aclose()
        stderr().print(f"{queue.where}: removed ({removed} keys)")

    run_guarded(main)


def _print_status(status: Status) -> None:
    out = stdout()
    out.print(f"{status.where}: recipe {status.recipe}")
    out.print(
        f"  {status.answered} of {status.total} answered, {status.waiting} waiting, "
        f"{status.pending} in work, {status.failed} failed"
        + (f", {status.second_answers} second answers dropped" if status.second_answers else "")
    )
    out.print(f"  workers ({len(status.workers)}; visibility timeout {status.visibility_s:g} s):")
    for w in status.workers:
        seen = "never" if w.seen_ago_s is None else f"{w.seen_ago_s:.1f}s ago"
        out.print(f"    {w.name}  {w.state}  {w.pending} held  {w.answered} answered  seen {seen}")
    if status.dead:
        held = sum(w.pending for w in status.dead)
        out.print(
            f"  {len(status.dead)} dead worker(s) holding {held} prompt(s): the others take "
            f"them over once idle past the visibility timeout"
        )
