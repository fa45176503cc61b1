"""Whether an answer is right: by its gold answers (`moa eval quick`'s rules), or, for
open-ended prompts with a `reference` answer, by `--judge`.

The judge compares the answer with the reference in both orders with AlpacaEval 2's pairwise
prompt (shipped in moa.evaluation's datasets, as `moa eval alpaca-eval` uses it); the answer
counts as right when the judge prefers it in both orders, so a judge's bias toward the first
or second position cannot make it right. Judge calls go through the response cache at
temperature 0: a draw judged once is never judged again.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from typing import Any, Protocol

from moa.batch.items import Item
from moa.evaluation.judge import Judge, pairwise_messages, parse_pairwise
from moa.evaluation.quick import is_correct
from moa.types import NO_USAGE, Usage

JUDGE_MAX_TOKENS = 8  # the verdict is one identifier


class Grader(Protocol):
    async def __call__(self, item: Item, text: str) -> tuple[bool, Usage]: ...


async def by_answers(item: Item, text: str) -> tuple[bool, Usage]:
    return is_correct(text, item.data["answers"], item.data["scoring"]), NO_USAGE


def template() -> str:
    folder = files("moa.evaluation") / "datasets" / "alpaca_eval"
    return (folder / "pairwise_judge_prompt.txt").read_text(encoding="utf-8")


class ByJudge:
    """Right when `judge` prefers the answer to the item's `reference` in both orders."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self._template = template()

    async def __call__(self, item: Item, text: str) -> tuple[bool, Usage]:
        if not text.strip():
            return False, NO_USAGE
        question, reference = item.data["question"], item.data["reference"]
        (first, u1), (second, u2) = await asyncio.gather(
            self.judge.ask(pairwise_messages(self._template, question, text, reference)),
            self.judge.ask(pairwise_messages(self._template, question, reference, text)),
        )
        won = parse_pairwise(first) == 1 and parse_pairwise(second) == 2
        return won, u1 + u2


def needs(rows: list[dict[str, Any]]) -> str:
    """ "answers" when every item has gold answers, else "judge" (every item has a reference)."""
    return "answers" if all("answers" in r for r in rows) else "judge"
