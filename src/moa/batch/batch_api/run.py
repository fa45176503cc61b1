"""`moa batch INPUT -o OUTPUT --batch-api`: every prompt's run through the engine at once,
its Batch-API calls answered by jobs round by round (see the package's docstring), each
finished prompt appended to OUTPUT as `moa batch` does; and `moa batch cancel OUTPUT`."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from moa import telemetry
from moa.batch.batch_api.collector import CURRENT, Collector
from moa.batch.batch_api.jobs import Rounds
from moa.batch.batch_api.parked import Parking
from moa.batch.batch_api.state import Results, RunState, results_path, state_path
from moa.batch.items import BatchStats, Item
from moa.batch.jsonl import AppendLog
from moa.call.chain import Cached
from moa.engine.mixture import MoA
from moa.errors import BatchAPIError, ConfigError, RunError
from moa.pricing import format_usd
from moa.providers.base import TERMINAL, BatchAPI
from moa.providers.registry import ProviderConfig, Registry, split_model_ref
from moa.types import Sampling


@dataclass(slots=True)
class BatchAPIStats(BatchStats):
    """`BatchStats`, and per round of jobs: how many jobs, requests, and what they cost."""

    rounds: dict[str, tuple[int, int]] = field(default_factory=dict)  # label → (jobs, requests)
    layer_costs: dict[str, float] = field(default_factory=dict)  # at the batch price
    jobs_created: int = 0


async def run_batch_api(
    items: Sequence[Item],
    mixture: MoA,
    output: Path,
    *,
    sampling: Sampling | None = None,
    console: Console | None = None,
    recipe: str = "custom",
    poll_s: float = 30.0,
    realtime_fallback: bool = False,
    budget_usd: float | None = None,
) -> BatchAPIStats:
    apis = batch_apis(mixture)
    stats = BatchAPIStats(total=len(items), budget_usd=budget_usd)
    state = RunState(state_path(output))
    with AppendLog(output) as log, Results(results_path(output)) as results:
        stats.truncated_bytes = log.truncated_bytes
        todo = [item for item in items if item.id not in log]
        stats.skipped = len(items) - len(todo)
        collector = Collector(results)
        parking = Parking(collector, mixture.registry, mixture.prices, apis)
        mixture.caller.link(parking)
        if (cache := mixture.caller.cache) is not None:
            # Around the parking: a reproducible call the cache holds is not sent again, and
            # what a job answers is kept (moa tune's writers reuse its samples so).
            mixture.caller.link(lambda inner: Cached(inner, cache))
        for agent in mixture.agents:  # resolved now, so a layer's calls park in one turn
            await mixture.caller.route(agent)
        show = _Shown(console)
        rounds = Rounds(
            state, results, collector, apis, parking.client, poll_s, realtime_fallback, budget_usd
        )
        rounds.progress = show

        for item in todo:  # all running before the first round, so it waits for them all
            collector.start(json.dumps(item.id))
        answer = _Answer(mixture, sampling, collector, log, stats, recipe)
        tasks = [asyncio.create_task(answer(item)) for item in todo]
        driver = asyncio.create_task(rounds.drive())
        try:
            await driver
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, driver]:
                task.cancel()
            await asyncio.gather(*tasks, driver, return_exceptions=True)
            show.close()
            stats.rounds = show.rounds
            stats.layer_costs = dict(collector.layer_costs)
            stats.jobs_created = rounds.jobs_created
    return stats


@dataclass(slots=True)
class _Answer:
    """One prompt's run, appended to the output with the jobs that answered it."""

    mixture: MoA
    sampling: Sampling | None
    collector: Collector
    log: AppendLog
    stats: BatchAPIStats
    recipe: str

    async def __call__(self, item: Item) -> None:
        key = json.dumps(item.id)
        CURRENT.set(key)
        try:
            with telemetry.batch_item(item.id):  # a trace per prompt
                result = await self.mixture.arun(list(item.messages), sampling=self.sampling)
        except RunError as exc:
            self.stats.failures.append((item.id, str(exc)))
            return
        finally:
            self.collector.finished(key)
        batch = {
            "jobs": sorted(self.collector.jobs_of.get(key, ())),
            "notes": self.collector.notes.get(key, []),
        }
        self.log.append(
            {
                "id": item.id,
                "recipe": self.recipe,
                "answer": result.text,
                "trace": result.to_dict(),
                "batch_api": batch,
            }
        )
        self.stats.add(result.usage)


def batch_apis(mixture: MoA) -> dict[str, BatchAPI]:
    """The Batch API of each provider the mixture calls that declares one; refuses what a
    Batch API cannot run (a staircase aggregator streams while proposals are written)."""
    if mixture.aggregator.staircase:
        raise BatchAPIError(
            "a staircase aggregator answers while the proposals stream, and Batch API jobs "
            "answer whole: set staircase = false for --batch-api"
        )
    apis: dict[str, BatchAPI] = {}
    for agent in mixture.agents:
        name, _ = split_model_ref(agent.model)
        api = mixture.registry.capabilities(name).batch_api
        if api is not None:
            apis[name] = api
    if not apis:
        raise BatchAPIError(
            "no provider of this recipe declares a Batch API: declare `batch_api = true` under "
            "[providers.NAME] for one that has it, or run without --batch-api"
        )
    return apis


async def cancel_jobs(output: Path, env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """Cancel every job of OUTPUT's run still running; (job id, its status now) for each."""
    env = os.environ if env is None else env
    path = state_path(output)
    if not path.exists():
        raise ConfigError(f"{path} does not exist: {output} has no --batch-api run to cancel")
    state = RunState(path)
    registry = _recorded(state, env)
    cancelled = []
    try:
        for job in state.jobs:
            if job["status"] in TERMINAL:
                continue
            client = registry.batch_client(job["provider"])
            # No id: the run stopped while the job was being created; found by its file.
            found = await client.find(job["file"]) if job["id"] is None else None
            job_id = job["id"] or (found.id if found is not None else None)
            if job_id is None:
                continue
            view = await client.cancel(job_id)
            state.update(job, view)
            cancelled.append((job_id, view.status))
    finally:
        await registry.aclose()
    return cancelled


def _recorded(state: RunState, env: Mapping[str, str]) -> Registry:
    """The providers of a run as its state recorded them. Their jobs live where they were
    made: the recorded endpoint wins over a MOA_<NAME>_BASE_URL set since."""
    configs = {
        name: ProviderConfig(name, str(where["base_url"]), where.get("api_key_env"))
        for name, where in state.providers.items()
    }
    moved = {f"MOA_{name.upper()}_BASE_URL" for name in configs}
    return Registry(configs, env={k: v for k, v in env.items() if k not in moved})


class _Shown:
    """Progress per round of jobs, from the jobs' request_counts (nothing when quiet)."""

    def __init__(self, console: Console | None) -> None:
        self.rounds: dict[str, tuple[int, int]] = {}
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        if console is not None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("requests · {task.fields[jobs]}"),
                TimeElapsedColumn(),
                console=console,
            )
            self._bar.start()

    def __call__(self, label: str, jobs: list[dict[str, Any]]) -> None:
        total = sum(j["counts"]["total"] for j in jobs)
        done = sum(j["counts"]["completed"] + j["counts"]["failed"] for j in jobs)
        self.rounds[label] = (len(jobs), total)
        if self._bar is None:
            return
        statuses: dict[str, int] = {}
        for job in jobs:
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
        text = f"{len(jobs)} job(s): " + ", ".join(f"{n} {s}" for s, n in statuses.items())
        if label not in self._tasks:
            self._tasks[label] = self._bar.add_task(label, total=total, jobs=text)
        self._bar.update(self._tasks[label], total=total, completed=done, jobs=text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def cost_lines(stats: BatchAPIStats) -> list[str]:
    """Per round and per layer: jobs, requests and the cost at the batch price."""
    lines = [f"{label}: {jobs} job(s), {n:,} requests" for label, (jobs, n) in stats.rounds.items()]
    lines += [
        f"{layer}: {format_usd(c)} at the batch price" for layer, c in stats.layer_costs.items()
    ]
    return lines
