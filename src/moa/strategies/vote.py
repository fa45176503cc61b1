"""`vote`: no model call — the most common answer after normalization, streamed verbatim.

For short answers (a number, a name, a date), where self-consistency's majority is as good as a
synthesis at none of its cost. The winner is the largest group of equal answers when at least
two proposals share it and no other group is as large; otherwise (a tie, all different) the
proposals are synthesized instead, and the trace says why. `normalize` is also what a layer's
`stop_when = "agree"` compares.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from moa.events import Event
from moa.strategies.base import Stage, Step, replay
from moa.strategies.synthesize import synthesis_steps, synthesize
from moa.trace import CallRecord

ARTICLES = frozenset({"a", "an", "the"})
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen")
_UNITS = (*_DIGITS, *_TEENS, "eighteen", "nineteen")
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
NUMBER_WORDS = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
# Words and numbers (with a decimal part); everything else is punctuation and goes.
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W_]+")


def normalize(text: str) -> str:
    """The answer as `vote` compares it: case, punctuation, articles and spacing ignored,
    numbers as digits ("Twenty-one." == "21", "1,000" == "one thousand", "3.50" == "3.5")."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # thousands separators
    tokens = _TOKEN.findall(text)
    # Articles go, unless they are the whole answer (a multiple-choice "A").
    tokens = [t for t in tokens if t not in ARTICLES] or tokens
    return " ".join(_numbers_as_digits(tokens))


def _numbers_as_digits(tokens: Sequence[str]) -> list[str]:
    out: list[str] = []
    total = chunk = 0
    in_number = False
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in NUMBER_WORDS:
            chunk, in_number = chunk + NUMBER_WORDS[token], True
        elif token in SCALES and in_number:
            if token == "hundred":
                chunk *= 100
            else:
                total, chunk = total + chunk * SCALES[token], 0
        elif token == "and" and in_number and following in NUMBER_WORDS:
            continue  # "one hundred and five"
        else:
            if in_number:
                out.append(str(total + chunk))
                total = chunk = 0
                in_number = False
            out.append(_plain_decimal(token))
    if in_number:
        out.append(str(total + chunk))
    return out


def _plain_decimal(token: str) -> str:
    if "." in token and token[0].isdigit():
        token = token.rstrip("0").rstrip(".")
    return token


@dataclass(frozen=True, slots=True)
class Agreement:
    """How far a set of answers agrees: the largest group of equal (normalized) answers."""

    count: int  # answers in the largest group
    total: int  # answers compared
    winner: int | None  # index of the first answer of the largest group; None on a tie
    answer: str  # the largest group's normalized answer

    @property
    def share(self) -> float:
        return self.count / self.total if self.total else 0.0


def agreement(texts: Sequence[str]) -> Agreement:
    groups: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        key = normalize(text)
        if key:  # an empty answer agrees with nothing
            groups.setdefault(key, []).append(index)
    if not groups:
        return Agreement(0, len(texts), None, "")
    ranked = sorted(groups.items(), key=lambda g: (-len(g[1]), g[1][0]))
    key, members = ranked[0]
    tied = len(ranked) > 1 and len(ranked[1][1]) == len(members)
    return Agreement(len(members), len(texts), None if tied else members[0], key)


async def answer_with(stage: Stage, proposal: CallRecord, why: str) -> AsyncIterator[Event]:
    """A proposal as the answer, verbatim, with no further call."""
    stage.result.notes.append(
        f"{why}: answered with layer {proposal.layer}'s proposal {proposal.index + 1} "
        f"({proposal.model}), verbatim"
    )
    for event in replay(stage, proposal.output, proposal.model):
        yield event


class Vote:
    name = "vote"
    # Its answer may be a proposal as written: tools, a response format or logprobs asked of
    # the final answer are refused up front (moa.strategies.base.refuse_unsupported).
    answers_verbatim = True

    async def worst_case(self, stage: Stage) -> list[Step]:
        """Nothing, unless no answer wins: then a synthesis."""
        if _winner(agreement(stage.references)) is not None:
            return []
        return await synthesis_steps(stage, stage.references)

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        found = agreement(stage.references)
        where = f"vote: {found.count} of {found.total} answers agree"
        index = _winner(found)
        if index is not None:
            winner = stage.proposals[index]
            async for event in answer_with(stage, winner, f"{where} ({found.answer!r})"):
                yield event
            return
        why = "a tie" if found.count >= 2 else "no two answers agree"
        stage.result.notes.append(f"vote: {why} — synthesized instead")
        async for event in synthesize(stage, stage.references):
            yield event


def _winner(found: Agreement) -> int | None:
    """The winning answer's index: the largest group's first, if two or more agree."""
    return found.winner if found.count >= 2 else None
