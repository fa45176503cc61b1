"""Step 1 of `moa tune`: the data, its seeded split, and one sampling pass over both splits.

Every candidate answers every prompt once at temperature 0 and `samples` times at the sampling
temperature with seeds 1…K. The calls are the ones a written recipe makes (same model, system
prompt, temperature, seed and max_tokens), so they are reproducible and the response cache
answers them again for free when a writing aggregator or the held-out check runs a recipe over
them: new calls are spent only where new text is written.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moa.batch.items import Item, Job
from moa.batch.jsonl import read_jsonl
from moa.engine.mixture import MoA
from moa.errors import InputError
from moa.evaluation.quick import normalize
from moa.evaluation.tune.grade import Grader
from moa.trace import CallRecord
from moa.types import NO_USAGE, Message, Usage

DEV, HELDOUT = "dev", "heldout"


@dataclass(frozen=True, slots=True)
class Sampler:
    """How each candidate is asked: the sampling pass and every recipe tune writes agree."""

    models: tuple[str, ...]
    samples: int = 5
    temperature: float = 0.7
    max_tokens: int | None = None
    system: str | None = None
    providers: dict[str, Any] = field(default_factory=dict)  # a recipe's [providers.NAME]
    # A candidate's own model-table keys (system, examples, stop, max_tokens, price, …).
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def entry(self, model: str, draw: int) -> dict[str, Any]:
        """Draw 0 is the greedy answer; draw d >= 1 the sample with seed d."""
        spec: dict[str, Any] = {"model": model}
        if self.max_tokens is not None:
            spec["max_tokens"] = self.max_tokens
        if self.system is not None:
            spec["system"] = self.system
        spec |= self.specs.get(model, {})
        if draw == 0:
            spec["temperature"] = 0.0
        else:
            spec["temperature"], spec["seed"] = self.temperature, draw
        return spec

    def draw_recipe(self) -> dict[str, Any]:
        """The sampling pass as a recipe: one layer of every call, picked by `medoid` (which
        makes no call of its own)."""
        entries = [self.entry(m, d) for m in self.models for d in range(self.samples + 1)]
        return {
            "name": "tune-samples",
            "on_degraded": "answer",
            "layers": [{"models": entries}],
            "aggregator": {"model": self.models[0], "strategy": "medoid"},
            **self.extra(),
        }

    def extra(self) -> dict[str, Any]:
        """What every recipe of this tuning carries besides its layers: the providers."""
        return {"providers": self.providers} if self.providers else {}


@dataclass(frozen=True, slots=True)
class Draw:
    text: str
    ok: bool
    correct: bool
    tokens: int
    seconds: float
    usd: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    id: Any
    question: str
    split: str
    draws: dict[str, list[Draw]]  # per model: the greedy answer, then the samples


def load(path: Path, judged: bool = False) -> list[Item]:
    """`moa eval quick`'s rows: `question` or `prompt`, `answers` (a string or a list), and an
    optional `"scoring": "final"`; with a judge (`judged`), rows may give a `reference`
    answer instead of `answers`."""
    items = []
    for number, row in read_jsonl(path):
        question = row.get("question", row.get("prompt"))
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"{path}:{number}: needs a `question` (or `prompt`)")
        data = _gold(path, number, row, judged)
        message = Message(role="user", content=question)
        items.append(Item(row.get("id", number), (message,), {"question": question, **data}))
    if not items:
        raise InputError(f"{path} holds no prompts")
    ids = [item.id for item in items]
    if len(set(map(str, ids))) != len(ids):
        raise InputError(
            f"{path}: two rows share an id; tune resumes by id, so each must be unique"
        )
    return items


def _gold(path: Path, number: int, row: dict[str, Any], judged: bool) -> dict[str, Any]:
    """What a row is graded by: its accepted `answers`, or its `reference` for the judge."""
    answers = row.get("answers")
    if isinstance(answers, str):
        answers = [answers]
    if answers is None and judged and isinstance(row.get("reference"), str):
        return {"reference": row["reference"]}
    if not isinstance(answers, list) or not answers:
        raise InputError(
            f"{path}:{number}: has no gold `answers` — tune needs them to score the "
            f"configurations: add `answers`, or a `reference` answer and --judge MODEL"
        )
    if not all(isinstance(a, str) and normalize(a) for a in answers):
        raise InputError(f"{path}:{number}: every accepted answer must be non-empty text")
    scoring = row.get("scoring", "words")
    if scoring not in ("words", "final"):
        raise InputError(f'{path}:{number}: `scoring` is "words" or "final", not {scoring!r}')
    return {"answers": answers, "scoring": scoring}


def split(items: Sequence[Item], holdout: float, seed: int = 0) -> list[Item]:
    """The items with `data["split"]` set: a seeded `holdout` share held out (at least one
    on each side), the rest to tune on. The same file and seed always give the same split."""
    if not 0 < holdout < 1:
        raise InputError(f"--holdout is a fraction between 0 and 1, not {holdout}")
    if len(items) < 2:
        raise InputError("tune needs at least two prompts: one to tune on, one to check on")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    count = min(len(items) - 1, max(1, round(len(items) * holdout)))
    held = set(order[:count])
    return [
        Item(it.id, it.messages, {**it.data, "split": HELDOUT if i in held else DEV})
        for i, it in enumerate(items)
    ]


@dataclass(frozen=True, slots=True)
class Answered:
    """One sampling call as the trace has it, live (`CallRecord`) or written (its dict)."""

    index: int
    ok: bool
    text: str
    tokens: int
    seconds: float
    usd: float | None
    error: str | None

    @classmethod
    def of(cls, call: CallRecord) -> Answered:
        u = call.usage
        return cls(
            call.index, call.ok, call.output, u.total_tokens, call.latency_s, u.cost_usd, call.error
        )

    @classmethod
    def written(cls, call: dict[str, Any]) -> Answered:
        tokens = call["input_tokens"] + call["output_tokens"]
        return cls(
            call["index"],
            call["status"] == "ok",
            call["output"],
            tokens,
            call["latency_s"],
            call["cost_usd"],
            call["error"],
        )


async def record(
    item: Item, calls: Sequence[Answered], sampler: Sampler, grade: Grader
) -> tuple[dict[str, Any], Usage]:
    """A prompt's row of the sampling pass: each candidate's draws in order, each graded;
    and what grading them cost (a judge's calls)."""
    calls = sorted(calls, key=lambda c: c.index)
    # Equal answers are graded once (a judge's verdict is the same; its calls are not free).
    texts = list(dict.fromkeys(c.text for c in calls if c.ok))
    verdicts = dict(zip(texts, await asyncio.gather(*(grade(item, t) for t in texts)), strict=True))
    usage = sum((judged for _, judged in verdicts.values()), NO_USAGE)
    draws: dict[str, list[dict[str, Any]]] = {m: [] for m in sampler.models}
    for c in calls:
        correct = c.ok and verdicts[c.text][0]
        draws[sampler.models[c.index // (sampler.samples + 1)]].append(
            {
                "text": c.text if c.ok else "",
                "ok": c.ok,
                "correct": correct,
                "tokens": c.tokens,
                "seconds": round(c.seconds, 4),
                "usd": c.usd,
                "error": c.error,
            }
        )
    return {**item.data, "draws": draws}, usage


def job(mixture: MoA, sampler: Sampler, grade: Grader) -> Job:
    """One prompt's sampling pass, real-time: every candidate's greedy answer and samples."""

    async def run(item: Item) -> tuple[dict[str, Any], Usage]:
        result = await mixture.arun(list(item.messages))
        calls = [Answered.of(c) for c in result.proposals(layer=1)]
        row, judged = await record(item, calls, sampler, grade)
        return row, result.usage + judged

    return run


def written_calls(row: dict[str, Any]) -> list[Answered]:
    """The sampling calls of a `--batch-api` output row (its trace)."""
    calls = row["trace"]["calls"]
    return [Answered.written(c) for c in calls if c["role"] == "proposer" and c["layer"] == 1]


def prompts(rows: Sequence[dict[str, Any]]) -> list[Prompt]:
    out = []
    for row in rows:
        draws = {m: [Draw(**d) for d in listed] for m, listed in row["draws"].items()}
        out.append(Prompt(row["id"], row["question"], row["split"], draws))
    return out
