"""Steps 3 and 4 of `moa tune`: recipes run for real, through the response cache.

A writing aggregator (synthesize, analysis, select, rank) makes new text, so it is run: the
recipe's proposals are the sampling pass's calls and come back from the cache, and only the
aggregator reaches the upstream. A picking configuration whose answer may need a call (`vote`
on a tie) is run the same way on the held-out split. What a prompt cost is what its calls cost
when they were first made: the draws' recorded usage plus the new calls'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from moa.batch.items import BatchStats, Item, Job, records, run_items
from moa.engine.mixture import MoA
from moa.evaluation.tune.grade import Grader
from moa.evaluation.tune.search import Outcome, Table
from moa.types import Usage


@dataclass(frozen=True, slots=True)
class Ran:
    """A recipe run over some prompts: each prompt's outcome, and the new calls it made."""

    outcomes: dict[Any, Outcome]
    calls: int
    stats: BatchStats


def job(mixture: MoA, grade: Grader) -> Job:
    async def run(item: Item) -> tuple[dict[str, Any], Usage]:
        result = await mixture.arun(list(item.messages))
        correct, judged = await grade(item, result.text)
        # A cache hit made no attempt: every other call reached the upstream, a writer's or a
        # sample the pass never drew.
        new = [c for c in result.calls if c.attempts > 0]
        record = {
            "text": result.text,
            "correct": correct,
            "new_calls": sum(c.attempts for c in new),  # a retry is a request too
            "new_tokens": sum(c.usage.total_tokens for c in new),
            "new_seconds": round(sum(c.latency_s for c in new), 4),
            "new_usd": _usd([c.usage.cost_usd for c in new]),
        }
        return record, result.usage + judged

    return run


def _usd(costs: Sequence[float | None]) -> float | None:
    return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


async def run_recipe(
    mixture: MoA,
    items: Sequence[Item],
    tables: dict[Any, Table],
    carrier: Any,
    out: Path,
    grade: Grader,
    *,
    concurrency: int,
    console: Console | None,
    label: str,
) -> Ran:
    """`mixture` over `items` into `out` (resumable); each outcome is the panel's drawn cost
    (`carrier`'s, a Config laid out as the recipe's layer) plus the new calls."""
    stats = await run_items(
        items, job(mixture, grade), out, concurrency=concurrency, console=console, label=label
    )
    outcomes, calls = {}, 0
    for row in records(out):
        base = tables[row["id"]].outcome(carrier)
        calls += row["new_calls"]
        usd = None if base.usd is None or row["new_usd"] is None else base.usd + row["new_usd"]
        outcomes[row["id"]] = Outcome(
            correct=row["correct"],
            calls=base.calls - base.written + row["new_calls"],
            tokens=base.tokens + row["new_tokens"],
            seconds=base.seconds + row["new_seconds"],
            usd=usd,
            written=row["new_calls"],
        )
    return Ran(outcomes, calls, stats)
