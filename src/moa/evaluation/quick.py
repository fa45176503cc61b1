"""Quick eval: short verifiable answers, the mixture against each of its proposers.

One MoA run per question gives both: each layer-1 proposal is that proposer alone (its
first sample, before it has seen anyone else's answer), and the final text is the mixture's.
An answer is correct when one of the accepted answers appears in it as whole words, after
lower-casing and dropping punctuation ("Paris." and "It is Paris" both match "paris").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moa.batch.items import Item, Job
from moa.batch.jsonl import read_jsonl
from moa.call.agent import Agent
from moa.engine.mixture import MoA
from moa.errors import InputError
from moa.evaluation.stats import wilson
from moa.strategies import final
from moa.types import Message, Sampling, Usage

MIXTURE = "mixture"


def load(path: Path) -> list[Item]:
    """Each line: `question` (a string) and `answers` (a string or a list of accepted ones)."""
    items = []
    for number, row in read_jsonl(path):
        question, answers = row.get("question"), row.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        if (
            not isinstance(question, str)
            or not question.strip()
            or not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, str) and normalize(a) for a in answers)
        ):
            raise InputError(f"{path}:{number}: needs a `question` and non-empty `answers`")
        # "final": only the answer's final result counts (reasoning answers; see is_correct).
        scoring = row.get("scoring", "words")
        if scoring not in ("words", "final"):
            raise InputError(f'{path}:{number}: `scoring` is "words" or "final", not {scoring!r}')
        data = {"question": question, "answers": answers, "scoring": scoring}
        items.append(Item(row.get("id", number), (Message(role="user", content=question),), data))
    if not items:
        raise InputError(f"{path} holds no questions")
    return items


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def is_correct(output: str, answers: list[str], scoring: str = "words") -> bool:
    """`words`: an accepted answer appears as whole words; `final`: the output's final result
    (the last "Answer: …" line, else its last number, as `vote` reads it) is one of them — a
    number met along the way does not count."""
    if scoring == "final":
        return final.is_correct(output, answers)
    padded = f" {normalize(output)} "
    return any(f" {normalize(a)} " in padded for a in answers)


def describe(agent: Agent) -> str:
    s = agent.sampling
    knobs = [f"T={s.temperature:g}" if s.temperature is not None else ""]
    knobs.append(f"seed={s.seed}" if s.seed is not None else "")
    knobs.append(f"top_p={s.top_p:g}" if s.top_p is not None else "")
    detail = ", ".join(k for k in knobs if k)
    return f"{agent.model} ({detail})" if detail else agent.model


def systems(mixture: MoA) -> list[str]:
    """What is scored, in table order: each layer-1 proposer, then the whole mixture."""
    first = mixture.layers[0].agents if mixture.layers else ()
    return [f"#{i} {describe(a)}" for i, a in enumerate(first, 1)] + [MIXTURE]


def job(mixture: MoA, sampling: Sampling | None = None) -> Job:
    names = systems(mixture)

    async def run(item: Item) -> tuple[dict[str, Any], Usage]:
        result = await mixture.arun(list(item.messages), sampling=sampling)
        answers = item.data["answers"]
        outputs = {names[p.index]: p.output if p.ok else "" for p in result.proposals(layer=1)}
        outputs[MIXTURE] = result.text
        scoring = item.data.get("scoring", "words")
        graded = {name: is_correct(text, answers, scoring) for name, text in outputs.items()}
        # A proposer that gave no answer scores as wrong; the reason is kept for the reader.
        errors = {names[p.index]: p.error for p in result.proposals(layer=1) if not p.ok}
        cost = {
            "calls": len(result.calls),
            "tokens": result.usage.total_tokens,
            "seconds": round(result.latency_s, 4),
        }
        record = {**item.data, "outputs": outputs, "correct": graded, "errors": errors}
        return {**record, "cost": cost}, result.usage

    return run


@dataclass(frozen=True, slots=True)
class Accuracy:
    system: str
    correct: int
    n: int
    low: float  # 95% Wilson interval
    high: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


def accuracy(names: list[str], graded: list[dict[str, Any]]) -> list[Accuracy]:
    rows = []
    for name in names:
        marks = [r["correct"].get(name, False) for r in graded]
        k, n = sum(marks), len(marks)
        rows.append(Accuracy(name, k, n, *wilson(k, n)))
    return rows
