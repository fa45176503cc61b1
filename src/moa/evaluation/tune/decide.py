"""Steps 3 and 4 of `moa tune`: writers on the leading panels, then the held-out judgement.

Only the tuning split is read until a winner is chosen. Then the held-out split answers the
winner and the two baselines a user would otherwise pick: the best member alone at
temperature 0, and the best member's self-consistency with as many calls as the winner makes
(the equal-budget baseline of Self-MoA and SLM-MUX: `medoid` over its greedy answer and its
samples, which takes the majority final result and breaks a tie toward the greedy answer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from moa.batch.items import Item
from moa.evaluation.tune import check
from moa.evaluation.tune.found import Build, Calls, Found
from moa.evaluation.tune.grade import Grader
from moa.evaluation.tune.recipe import WRITERS, Candidate, Writer, recipe
from moa.evaluation.tune.samples import Prompt, Sampler
from moa.evaluation.tune.search import (
    ALONE,
    MEDOID,
    VOTE,
    Config,
    Member,
    Score,
    Table,
    rank_key,
)
from moa.recipes.schema import Recipe


def writer_calls(strategy: str, panel: int) -> int:
    """The most calls a prompt a writer makes, for `--max-calls` (the runs count the real
    ones): a fallback synthesis after `select` or `analysis`, and for `rank` every panel call
    ranks the others before the synthesis."""
    return {"synthesize": 1, "select": 2, "analysis": 2}.get(strategy, panel + 1)


CHOSEN, BEST, SELF_CONSISTENCY = "chosen", "best member", "self-consistency"


def choose(scores: Sequence[Score]) -> Score:
    """The cheapest configuration within one standard error of the most accurate (Breiman's
    one-standard-error rule): among hundreds of configurations, one that scored an answer more
    by chance must not win on calls it does not need. Cheapest: fewest calls, then tokens."""
    top = min(scores, key=rank_key)
    p, n = top.accuracy, max(top.n, 1)
    # At 0% or 100% the binomial SE is zero; a floor of one answer in n keeps the rule.
    se = math.sqrt(max(p * (1 - p), 1 / n) / n)
    close = [s for s in scores if s.accuracy >= p - se - 1e-12]
    return min(close, key=lambda s: (s.mean("calls"), s.mean("tokens"), -s.correct))


def leading_panels(scores: Sequence[Score], count: int) -> list[tuple[Member, ...]]:
    """The `count` best panels of two calls or more, each panel once."""
    panels: list[tuple[Member, ...]] = []
    for s in sorted(scores, key=rank_key):
        if s.config.calls >= 2 and s.config.members not in panels:
            panels.append(s.config.members)
        if len(panels) == count:
            break
    return panels


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:120]


@dataclass(slots=True)
class Steps:
    found: Found
    sampler: Sampler
    build: Build
    items: dict[Any, Item]
    calls: Calls
    work: Path
    console: Console | None
    grade: Grader

    def _items(self, prompts: Sequence[Prompt]) -> list[Item]:
        return [self.items[p.id] for p in prompts]

    async def _run(self, candidate: Candidate, prompts: Sequence[Prompt], folder: str) -> check.Ran:
        mixture = self.build(Recipe.model_validate(recipe(candidate, self.sampler, "tune-check")))
        carrier = (
            candidate.config
            if candidate.writer is None
            else Config(candidate.config.members, MEDOID)
        )
        ran = await check.run_recipe(
            mixture,
            self._items(prompts),
            {p.id: Table(p) for p in prompts},
            carrier,
            self.work / folder / f"{_slug(candidate.label)}.jsonl",
            self.grade,
            concurrency=self.found.settings.concurrency,
            console=self.console,
            label=candidate.label[:40],
        )
        self.calls.used += ran.calls
        return ran

    async def writers(self) -> None:
        """Each `-a` aggregator with each writing strategy on the leading panels, on the
        tuning split, while `--max-calls` leaves room for the held-out check too."""
        found = self.found
        if not found.settings.aggregators:
            found.notes.append("no -a AGGREGATOR given: no writing aggregator was tried")
            return
        panels = leading_panels(found.scores, found.settings.leaders)
        held_reserved = 0  # the held-out run of whichever writer wins must still fit
        for rank, members in enumerate(panels, 1):
            for model in found.settings.aggregators:
                for strategy in WRITERS:
                    candidate = Candidate(Config(members, MEDOID), Writer(model, strategy))
                    per_prompt = writer_calls(strategy, candidate.config.calls)
                    held = max(held_reserved, per_prompt * len(found.held))
                    need = per_prompt * len(found.dev) + held
                    if not self.calls.fits(need):
                        found.notes.append(
                            f"not tried: {candidate.label} (up to {need} calls, "
                            f"--max-calls has {self.calls.left})"
                        )
                        continue
                    held_reserved = held
                    ran = await self._run(candidate, found.dev, "writers")
                    score = Score(candidate.config, tuple(ran.outcomes[p.id] for p in found.dev))
                    found.written.append(score)
                    found.candidates[id(score)] = candidate
                    found.notes.append(
                        f"tried: {candidate.label} (leading panel #{rank}): "
                        f"{score.correct}/{score.n} right, {ran.calls} new calls"
                    )

    async def judge(self) -> None:
        """The winner on the tuning split, then it and the baselines on the held-out split."""
        found = self.found
        everything = [*found.scores, *found.written]
        winner = choose(everything)
        found.top = min(everything, key=rank_key)
        chosen = found.candidate(winner)
        alone = [s for s in found.scores if s.config.strategy == ALONE]
        best = min(alone, key=rank_key).config
        draws = min(self.sampler.samples + 1, max(2, round(winner.mean("calls"))))
        sc = Config((Member(best.members[0].model, draws),), MEDOID)
        found.chosen = chosen
        found.baselines = {BEST: Candidate(best), SELF_CONSISTENCY: Candidate(sc)}
        held_tables = [Table(p) for p in found.held]
        # A writer's held-out calls were reserved when it was tried; vote's ties are not.
        ties_fit = chosen.config.strategy != VOTE or self.calls.fits(len(found.held))
        if chosen.writer is None and chosen.config.strategy == VOTE and not ties_fit:
            found.notes.append(
                "vote's ties on the held-out split are scored by its medoid stand-in: "
                f"--max-calls has {self.calls.left} for their synthesis"
            )
        if chosen.writer is not None or (chosen.config.strategy == VOTE and ties_fit):
            ran = await self._run(chosen, found.held, "heldout")
            outcomes = tuple(ran.outcomes[p.id] for p in found.held)
        else:
            outcomes = tuple(t.outcome(chosen.config) for t in held_tables)
        found.heldout[CHOSEN] = Score(chosen.config, outcomes)
        for name, baseline in found.baselines.items():
            config = baseline.config
            found.heldout[name] = Score(config, tuple(t.outcome(config) for t in held_tables))
        if draws != round(winner.mean("calls")):
            found.notes.append(
                f"self-consistency uses {draws} calls a prompt (the winner makes "
                f"{winner.mean('calls'):.1f}; {self.sampler.samples + 1} were drawn per model)"
            )
