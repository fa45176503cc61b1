"""Run many items through an async job with bounded concurrency, into a resumable JSONL file.

`moa batch`, the AlpacaEval and MT-Bench generations and the judges all use `run_items`:
items whose id is already in the output are skipped, each finished item is appended durably
(see `jsonl.AppendLog`), and a failed item is reported but not written, so a rerun retries it.

With a `BatchBudget`, no item is started once what this invocation has spent plus the worst
case of the items in flight and of the next one would pass the budget; a rerun resumes there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from moa import telemetry
from moa.batch.jsonl import AppendLog, read_jsonl
from moa.engine.mixture import MoA
from moa.engine.options import as_messages
from moa.errors import ConfigError, InputError, RunError
from moa.pricing import format_usd
from moa.types import NO_USAGE, Message, Sampling, Usage


@dataclass(frozen=True, slots=True)
class Item:
    id: Any
    messages: tuple[Message, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)  # anything else the job needs


# A job turns an item into the fields of its output record, and the tokens (and USD) it used.
Job = Callable[[Item], Awaitable[tuple[dict[str, Any], Usage]]]


@dataclass(frozen=True, slots=True)
class BatchBudget:
    limit_usd: float
    worst_case: Callable[[Item], Awaitable[float]]  # the most one item may cost


def worst_case_budget(
    limit_usd: float | None, mixture: MoA, sampling: Sampling | None = None
) -> BatchBudget | None:
    """A budget that reserves each item's worst-case cost on `mixture` (None: no limit)."""
    if limit_usd is None:
        return None
    if limit_usd <= 0:
        raise ConfigError("--budget must be a positive amount of USD")

    async def worst_case(item: Item) -> float:
        return await mixture.worst_case_usd(list(item.messages), sampling)

    return BatchBudget(limit_usd, worst_case)


@dataclass(slots=True)
class _Gate:
    """Admits items while the spend so far plus the worst case reserved by items in flight
    stays within the budget; once one is refused, no later item starts (input order)."""

    budget: BatchBudget | None
    spent: float = 0.0
    reserved: float = 0.0
    closed: bool = False

    async def admit(self, item: Item) -> float | None:
        """The worst case reserved for the item, or None: it is left for a rerun."""
        if self.budget is None:
            return 0.0
        if not self.closed:
            worst = await self.budget.worst_case(item)
            # No await between the check and the reservation: one worker at a time.
            if not self.closed and self.spent + self.reserved + worst <= self.budget.limit_usd:
                self.reserved += worst
                return worst
        self.closed = True
        return None

    def settle(self, worst: float, cost: float | None) -> None:
        self.reserved -= worst
        self.spent += worst if cost is None else cost  # unknown: assume the worst


@dataclass(slots=True)
class BatchStats:
    total: int = 0
    skipped: int = 0  # already in the output file
    done: int = 0
    failures: list[tuple[Any, str]] = field(default_factory=list)
    usage: Usage = NO_USAGE
    known_cost_usd: float = 0.0  # the items whose cost is known
    unpriced: int = 0  # items whose cost is unknown (a model without a price)
    truncated_bytes: int = 0  # a partial last line cut off on resume
    budget_usd: float | None = None
    not_started: int = 0  # items left for a rerun because the budget would have been passed
    degraded: int = 0  # items answered by a run that lost members (their lines say so)

    def add(self, usage: Usage) -> None:
        self.done += 1
        self.usage = self.usage + usage
        if usage.cost_usd is None:
            self.unpriced += 1
        else:
            self.known_cost_usd += usage.cost_usd

    def cost_text(self) -> str:
        if not self.unpriced:
            return format_usd(self.known_cost_usd)
        return (
            f"cost unknown ({format_usd(self.known_cost_usd)} priced, "
            f"{self.unpriced} item(s) with no price)"
        )


def load_input(path: Path) -> list[Item]:
    """`moa batch` input: each line an object with `id` and `prompt` or `messages`."""
    items: list[Item] = []
    seen: set[str] = set()
    for number, line in read_jsonl(path):
        where = f"{path}:{number}"
        if "id" not in line:
            raise InputError(f"{where}: every line needs an `id`")
        key = repr(line["id"])
        if key in seen:
            raise InputError(f"{where}: duplicate id {line['id']!r}")
        seen.add(key)
        source = line.get("messages", line.get("prompt"))
        if not isinstance(source, str | list):
            raise InputError(f"{where}: needs a `prompt` string or a `messages` list")
        try:
            messages = as_messages(source)
        except (InputError, KeyError, TypeError) as exc:
            raise InputError(f"{where}: {exc}") from None
        items.append(Item(line["id"], tuple(messages)))
    if not items:
        raise InputError(f"{path} holds no prompts")
    return items


def answer_job(mixture: MoA, sampling: Sampling | None = None, **extra: Any) -> Job:
    """The job of `moa batch`: one MoA run per item; the record has the answer and trace."""

    async def job(item: Item) -> tuple[dict[str, Any], Usage]:
        with telemetry.batch_item(item.id):  # a trace per prompt
            result = await mixture.arun(list(item.messages), sampling=sampling)
        degradation = result.degradation
        return {
            **extra,
            "answer": result.text,
            # Beside the answer, so a filter over the file need not read the trace.
            "degraded": degradation.degraded,
            "answered": degradation.answered,
            "asked": degradation.asked,
            "trace": result.to_dict(),
        }, result.usage

    return job


async def run_items(
    items: Sequence[Item],
    job: Job,
    output: Path,
    *,
    concurrency: int = 4,
    console: Console | None = None,
    label: str = "batch",
    budget: BatchBudget | None = None,
) -> BatchStats:
    """Run `job` over the items not yet in `output`, at most `concurrency` at a time."""
    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    stats = BatchStats(total=len(items), budget_usd=budget.limit_usd if budget else None)
    gate = _Gate(budget)
    with AppendLog(output) as log, _progress(console) as bar:
        stats.truncated_bytes = log.truncated_bytes
        todo = [item for item in items if item.id not in log]
        stats.skipped = len(items) - len(todo)
        task = bar.add_task(
            label,
            total=len(items),
            completed=stats.skipped,
            tokens="0 tok",
            failed="",
            skipped=stats.skipped,
        )
        pending: Iterator[Item] = iter(todo)

        async def worker() -> None:
            # The iterator is shared; asyncio switches tasks only at `await`, so each item
            # is taken by exactly one worker.
            for item in pending:
                worst = await gate.admit(item)
                if worst is None:
                    stats.not_started += 1
                    continue
                try:
                    record, usage = await job(item)
                except RunError as exc:
                    spent = getattr(exc, "result", None)  # what the failed run did spend
                    gate.settle(worst, spent.cost_usd if spent is not None else None)
                    stats.failures.append((item.id, str(exc)))
                    bar.update(task, advance=1, failed=f"{len(stats.failures)} failed")
                    continue
                gate.settle(worst, usage.cost_usd)
                log.append({"id": item.id, **record})
                stats.add(usage)
                stats.degraded += bool(record.get("degraded"))
                bar.update(task, advance=1, tokens=_tokens(stats))

        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(todo)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    return stats


def records(output: Path) -> list[dict[str, Any]]:
    """The records of an output file, in the order they were written."""
    with AppendLog(output) as log:
        return list(log.done.values())


class _RateColumn(ProgressColumn):
    """Items per second (or minute) over this run: rich's own speed is a short moving window,
    which after a resume or a run of cache hits says nothing about the real throughput."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        fresh = task.completed - task.fields.get("skipped", 0)
        speed = fresh / elapsed if elapsed > 0 else 0.0
        if not speed:
            return Text("–/min", style="progress.data.speed")
        if speed >= 1:
            return Text(f"{speed:.2f}/s", style="progress.data.speed")
        return Text(f"{speed * 60:.1f}/min", style="progress.data.speed")


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[tokens]}"),
        TextColumn("[red]{task.fields[failed]}"),
        console=console or Console(stderr=True),
        disable=console is None,
        transient=False,
    )


def _tokens(stats: BatchStats) -> str:
    usage = stats.usage
    return f"{usage.input_tokens:,} in / {usage.output_tokens:,} out tok · {stats.cost_text()}"
