"""`moa batch --queue`: put a batch's prompts on a work queue (once: a rerun adds nothing),
with the recipe and options its workers run them with, and collect the answers into the
output file when every prompt is answered.

The queue carries the recipe's content (as validated, with the command line's overrides
applied), never a path, and no API key: each worker reads its own environment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from moa.batch.items import BatchStats, Item
from moa.batch.jsonl import AppendLog
from moa.batch.queue.work import Run, WorkQueue
from moa.batch.worker import usage_of
from moa.errors import ConfigError
from moa.recipes.schema import Recipe
from moa.types import Sampling

DEFAULT_VISIBILITY_S = 30.0


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """What every worker of the run needs besides its own environment."""

    recipe: Recipe
    sampling: Sampling = field(default_factory=Sampling)
    no_cache: bool = False

    def options(self) -> dict[str, Any]:
        s = self.sampling
        sampling = {"temperature": s.temperature, "max_tokens": s.max_tokens, "top_p": s.top_p}
        return {"sampling": sampling, "no_cache": self.no_cache}

    def recipe_data(self) -> dict[str, Any]:
        return self.recipe.model_dump(mode="json")

    def fingerprint(self) -> str:
        blob = json.dumps([self.recipe_data(), self.options()], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def of(cls, run: Run) -> QueuedRun:
        from pydantic import ValidationError

        try:
            recipe = Recipe.model_validate(run.recipe)
        except ValidationError as exc:
            raise ConfigError(
                f"the queue's recipe is not valid for this moa ({exc.error_count()} error(s)); "
                f"run the same moa version on every worker"
            ) from None
        sampling = run.options.get("sampling", {})
        return cls(recipe, Sampling(**sampling), bool(run.options.get("no_cache")))


def key(item_id: Any) -> str:
    # As the output file tells ids apart: 1 and "1" are two prompts.
    return json.dumps(item_id, sort_keys=True)


def payload(item: Item) -> str:
    return json.dumps({"id": item.id, "messages": list(item.messages)}, ensure_ascii=False)


async def enqueue(
    queue: WorkQueue, run: QueuedRun, items: Sequence[Item], visibility_s: float
) -> int:
    """Open the run on the queue and add the prompts it does not hold; how many were new."""
    if visibility_s <= 0:
        raise ConfigError("--visibility-timeout must be a positive number of seconds")
    await queue.open(run.fingerprint(), run.recipe_data(), run.options(), visibility_s)
    return await queue.enqueue((key(item.id), payload(item)) for item in items)


async def collect(
    queue: WorkQueue, items: Sequence[Item], log: AppendLog, stats: BatchStats
) -> None:
    """Append each answered item (once: the queue keeps one answer per prompt, the output
    skips ids it has) to the output in input order; note the failed ones."""
    todo = [i for i in items if i.id not in log]
    keys = [key(i.id) for i in todo]
    answers = await queue.answers(keys)
    failures = await queue.failures(keys)
    for item, k in zip(todo, keys, strict=True):
        if k in answers:
            answer = json.loads(answers[k])
            log.append(answer["record"])
            stats.add(usage_of(answer))
        else:
            why = failures.get(k, "not answered by any worker (the queue was cleared?)")
            stats.failures.append((item.id, why))
