"""Several recipes or strategies on the same questions, each against the baseline a user would
otherwise pick: the first proposer's model alone, temperature 0, the question as it is.

What `moa eval quick` runs; usable from Python:

    entrants = compare.entrants([recipes.load("local")], strategies=["vote"])
    report = await compare.run(entrants, quick.load(path), runs=Path("runs"), registry=Registry())

Each entrant is one MoA run per question (`quick.job`), kept in its own resumable JSONL file;
every scored system (each layer-1 proposer alone, and the mixture) gets its accuracy, its cost
per question, and the paired difference to the baseline on the questions both answered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from moa import recipes
from moa.batch.items import BatchStats, Item, records, run_items
from moa.evaluation import deceptive, quick
from moa.evaluation.stats import PairedDifference, mean, paired_difference
from moa.policies.cache import Cache
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe


@dataclass(frozen=True, slots=True)
class Entrant:
    name: str
    recipe: Recipe
    baseline: bool = False
    deceptive: bool = False


def baseline_recipe(recipe: Recipe) -> Recipe:
    """An aggregator-only recipe of the first proposer's model (the aggregator's, when there
    are no proposers) at temperature 0: no references, no system prompt, no token cap."""
    first = recipe.layers[0].models[0] if recipe.layers else recipe.aggregator.model
    model = first if isinstance(first, str) else first.model
    return Recipe.model_validate(
        {
            "name": f"baseline: {model} alone, T=0",
            "timeout_s": recipe.timeout_s,
            "retry": recipe.retry.model_dump(),
            "aggregator": {"model": model, "temperature": 0.0},
            "providers": {k: v.model_dump() for k, v in recipe.providers.items()},
            "rate_limits": {k: v.model_dump() for k, v in recipe.rate_limits.items()},
        }
    )


def with_strategy(recipe: Recipe, strategy: str) -> Recipe:
    """The recipe with `[aggregator] strategy` set (validated like a recipe file)."""
    data = recipe.model_dump()
    data["aggregator"]["strategy"] = strategy
    data["name"] = f"{recipe.name} [{strategy}]"
    return Recipe.model_validate(data)


def entrants(
    chosen: Sequence[Recipe], strategies: Sequence[str] = (), *, with_deceiver: bool = False
) -> list[Entrant]:
    """The baseline (of the first recipe), then each recipe once per strategy (as written when
    no strategy is given), and with `with_deceiver` each of those again with one liar."""
    if not chosen:
        raise ValueError("entrants needs at least one recipe")
    systems = [with_strategy(r, s) for r in chosen for s in strategies] or list(chosen)
    out = [Entrant(r.name, r) for r in systems]
    if with_deceiver:
        out += [Entrant(d.name, d, deceptive=True) for d in map(deceptive.with_deceiver, systems)]
    base = baseline_recipe(chosen[0])
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ValueError("two recipes share a name; give each recipe file its own `name`")
    return [Entrant(base.name, base, baseline=True), *out]


@dataclass(frozen=True, slots=True)
class Row:
    entrant: str
    system: str  # a proposer ("#1 ...") or quick.MIXTURE
    accuracy: quick.Accuracy
    calls: float  # per question, of the whole MoA run (the same for each system of an entrant)
    tokens: float
    seconds: float
    vs_baseline: PairedDifference | None  # None for the baseline itself
    deceptive: bool = False

    def to_dict(self) -> dict[str, Any]:
        a = self.accuracy
        return {
            "entrant": self.entrant,
            "system": self.system,
            "deceptive": self.deceptive,
            "correct": a.correct,
            "n": a.n,
            "accuracy": a.accuracy,
            "ci95": [a.low, a.high],
            "calls_per_question": self.calls,
            "tokens_per_question": self.tokens,
            "seconds_per_question": self.seconds,
            "vs_baseline": asdict(self.vs_baseline) if self.vs_baseline else None,
        }


def runs_file(runs: Path, entrant: Entrant) -> Path:
    """`runs/` (a folder) → runs/<entrant>.jsonl, one resumable file per entrant."""
    return runs / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', entrant.name).strip('_')}.jsonl"


async def run(
    chosen: Sequence[Entrant],
    items: Sequence[Item],
    *,
    runs: Path,
    registry: Registry,
    cache: Cache | None = None,
    concurrency: int = 1,
    console: Console | None = None,
) -> tuple[list[Row], list[BatchStats]]:
    """Answer every question with every entrant (the baseline first), then score them."""
    recipes.check_shared_providers([e.recipe for e in chosen])
    if any(e.deceptive for e in chosen):
        questions = [(i.data["question"], i.data["answers"]) for i in items]
        wrong = deceptive.wrong_answers(questions)
        registry.add_factory(deceptive.PROVIDER, lambda: deceptive.DeceptiveProvider(wrong))
    mixtures = [recipes.build(e.recipe, registry, cache=cache) for e in chosen]  # keys first
    all_stats, graded = [], {}
    for entrant, mixture in zip(chosen, mixtures, strict=True):
        path = runs_file(runs, entrant)
        stats = await run_items(
            items,
            quick.job(mixture),
            path,
            concurrency=concurrency,
            console=console,
            label=entrant.name,
        )
        all_stats.append(stats)
        wanted = {repr(i.id) for i in items}
        graded[entrant.name] = [r for r in records(path) if repr(r["id"]) in wanted]
    rows = score(
        chosen, graded, {e.name: quick.systems(m) for e, m in zip(chosen, mixtures, strict=True)}
    )
    return rows, all_stats


def score(
    chosen: Sequence[Entrant],
    graded: dict[str, list[dict[str, Any]]],
    systems: dict[str, list[str]],
) -> list[Row]:
    """Rows in entrant order; an aggregator-only recipe has no proposers, only its mixture."""
    base = next((e for e in chosen if e.baseline), None)
    base_marks = (
        {repr(r["id"]): bool(r["correct"].get(quick.MIXTURE)) for r in graded[base.name]}
        if base
        else {}
    )
    rows = []
    for entrant in chosen:
        records_ = graded[entrant.name]
        cost = [r.get("cost", {}) for r in records_]
        per_q = {k: mean([c.get(k, 0) for c in cost]) for k in ("calls", "tokens", "seconds")}
        for accuracy in quick.accuracy(systems[entrant.name], records_):
            diff = None
            if not entrant.baseline and base is not None:
                both = [r for r in records_ if repr(r["id"]) in base_marks]
                diff = paired_difference(
                    [bool(r["correct"].get(accuracy.system)) for r in both],
                    [base_marks[repr(r["id"])] for r in both],
                )
            rows.append(
                Row(
                    entrant.name,
                    accuracy.system,
                    accuracy,
                    **per_q,
                    vs_baseline=diff,
                    deceptive=entrant.deceptive,
                )
            )
    return rows
