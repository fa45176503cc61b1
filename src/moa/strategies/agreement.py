"""When answers agree: each normalized (case, punctuation, articles and number words aside), and
the largest group of equal ones. `vote` answers with it, a layer's `stop_when = "agree"` stops on
it, and the cluster filter and `medoid` compare answers by the same words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

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
