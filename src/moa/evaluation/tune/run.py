"""`moa tune`: sample once, score every picking configuration offline, run the writers on the
leading panels, and judge the winner on prompts it never tuned on.

Work files sit in a folder beside the recipe written (`RECIPE.tune/`): `samples.jsonl` (the
sampling pass), `writers/` and `heldout/` (recipes run over the samples), `settings.json` (what
the samples were drawn with). Rerunning the same command resumes: nothing on disk is asked for
again. The search reads the tuning split only; the held-out split is read once a winner is
chosen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from moa.batch.items import BatchStats, Item, records, run_items, worst_case_budget
from moa.batch.jsonl import AppendLog
from moa.engine.mixture import MoA
from moa.errors import ConfigError, InputError
from moa.evaluation.tune import decide, samples, search
from moa.evaluation.tune.found import Build, Calls, Found, Settings
from moa.evaluation.tune.grade import Grader, by_answers
from moa.evaluation.tune.samples import DEV, HELDOUT, Prompt
from moa.pricing import format_usd
from moa.recipes.schema import ModelSpec, ProviderSpec, Recipe

MIN_HELDOUT = 30  # fewer held-out prompts than this give a wide interval, and a warning


async def tune(
    settings: Settings,
    work: Path,
    build: Build,
    console: Console | None,
    grade: Grader = by_answers,
) -> Found:
    """The whole tuning; `grade` is `grade.ByJudge` when `settings.judge` is set."""
    items = _items(settings)
    _claim(work, settings)
    sampler = settings.sampler()
    mixture = build(Recipe.model_validate(sampler.draw_recipe()))
    out = work / "samples.jsonl"
    await _refuse_over_budget(mixture, items, out, settings.budget)
    if settings.batch_api:
        stats = await _sample_by_batch_api(settings, mixture, items, work, console, grade)
    else:
        stats = await run_items(
            items,
            samples.job(mixture, sampler, grade),
            out,
            concurrency=settings.concurrency,
            console=console,
            label="sampling",
            budget=worst_case_budget(settings.budget, mixture),
        )
    drawn = samples.prompts(records(out))
    skipped = _unreachable(drawn, settings.models)
    models = [m for m in settings.models if m not in skipped]
    if not models:
        reasons = "; ".join(f"{m}: {why}" for m, why in skipped.items())
        raise ConfigError(f"no candidate answered any prompt ({reasons})")
    dev = [p for p in drawn if p.split == DEV]
    held = [p for p in drawn if p.split == HELDOUT]
    if not dev or not held:
        raise InputError("the sampling pass left one side of the split empty: rerun to resume it")
    found = Found(settings, stats, dev, held, skipped, [])
    found.scores = search.score(list(search.configurations(models, settings.samples + 1)), dev)
    if len(held) < MIN_HELDOUT:
        found.notes.append(
            f"only {len(held)} held-out prompts (fewer than {MIN_HELDOUT}): the intervals are wide"
        )
    budget = Calls(settings.max_calls)
    by_id = {it.id: it for it in items}
    steps = decide.Steps(found, sampler, build, by_id, budget, work, console, grade)
    await steps.writers()
    await steps.judge()
    found.calls_after_sampling = budget.used
    return found


async def _sample_by_batch_api(
    settings: Settings,
    mixture: MoA,
    items: list[Item],
    work: Path,
    console: Console | None,
    grade: Grader,
) -> BatchStats:
    """The sampling pass as provider Batch API jobs, at batch prices (`moa batch --batch-api`'s
    runner, resumable the same way); each answered prompt's draws are then graded into
    `samples.jsonl`. The mixture's cache keeps the answers, so later steps reuse them."""
    from moa.batch.batch_api.run import run_batch_api

    jobs_out, out = work / "samples.batch-api.jsonl", work / "samples.jsonl"
    with AppendLog(out) as log:
        todo = [it for it in items if it.id not in log]
    stats = await run_batch_api(
        todo,
        mixture,
        jobs_out,
        console=console,
        recipe="tune-samples",
        budget_usd=settings.budget,
    )
    by_id = {json.dumps(it.id): it for it in todo}
    with AppendLog(out) as log:
        for row in records(jobs_out):
            item = by_id.get(json.dumps(row["id"]))
            if item is None or item.id in log:
                continue
            sampled, _ = await samples.record(
                item, samples.written_calls(row), settings.sampler(), grade
            )
            log.append({"id": item.id, **sampled})
    return stats


def _items(settings: Settings) -> list[Item]:
    if not settings.models:
        raise InputError("tune needs at least one candidate model (-m MODEL)")
    if len(set(settings.models)) != len(settings.models):
        raise InputError("a candidate is named twice: give each -m MODEL once")
    if settings.samples < 1:
        raise InputError("--samples must be at least 1")
    check_config(settings.specs, settings.providers)
    loaded = samples.load(settings.data, judged=settings.judge is not None)
    return samples.split(loaded, settings.holdout, settings.seed)


def check_config(specs: dict[str, dict[str, Any]], providers: dict[str, Any]) -> None:
    """`--config`'s tables, refused with one line: a candidate's keys are a recipe's model
    table less what tune chooses; providers are a recipe's `[providers.NAME]`."""
    for model, spec in specs.items():
        fixed = sorted({"model", "temperature", "seed", "samples"} & set(spec))
        if fixed:
            raise InputError(
                f"[models.{model!r}] sets {', '.join(fixed)}, which tune chooses itself "
                f"(--temperature, seeds 1…--samples): leave them out"
            )
        try:
            ModelSpec.model_validate({"model": model, **spec})
        except ValidationError as exc:
            raise InputError(f"[models.{model!r}]: {_first(exc)}") from None
    for name, table in providers.items():
        try:
            ProviderSpec.model_validate(table)
        except ValidationError as exc:
            raise InputError(f"[providers.{name}]: {_first(exc)}") from None


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {'unknown key' if error['type'] == 'extra_forbidden' else error['msg']}"


def _claim(work: Path, settings: Settings) -> None:
    """The work folder is this tuning's: samples drawn with other settings are not mixed in."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "settings.json"
    wanted = settings.drawn_with()
    if path.exists():
        had = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in wanted if had.get(k) != wanted[k])
        if changed:
            raise InputError(
                f"{work} holds samples drawn with other {', '.join(changed)}: write to another "
                f"-o RECIPE.toml, or delete {work} to draw again"
            )
        return
    path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")


async def _refuse_over_budget(
    mixture: MoA, items: Sequence[Item], out: Path, budget: float | None
) -> None:
    """Refused before any call: a sampling pass whose worst case passes `--budget`."""
    if budget is None:
        return
    if budget <= 0:
        raise ConfigError("--budget must be a positive amount of USD")
    with AppendLog(out) as log:
        todo = [it for it in items if it.id not in log]
    worst = sum([await mixture.worst_case_usd(list(it.messages)) for it in todo])
    if worst > budget:
        raise ConfigError(
            f"the sampling pass could cost up to {format_usd(worst)} ({len(todo)} prompts × "
            f"{len(mixture.layers[0].agents)} calls), over --budget {format_usd(budget)}: raise "
            f"--budget, or lower --samples, the candidates or the prompts"
        )


def _unreachable(drawn: Sequence[Prompt], models: Sequence[str]) -> dict[str, str]:
    """Candidates that gave no sample at all, each with its first error."""
    out = {}
    for model in models:
        draws = [d for p in drawn for d in p.draws.get(model, [])]
        if draws and not any(d.ok for d in draws):
            out[model] = next((d.error for d in draws if d.error), "no answer")
    return out
