"""An answer's final result: what `vote`, `medoid`, adaptive sampling and `moa eval quick`
compare when answers reason before they conclude.

A step-by-step answer's text differs from sample to sample even when its conclusion does not;
self-consistency (Wang et al. 2023) takes the majority of the conclusions. The final result is
found by the `answer_pattern` regex a model or the recipe's aggregator sets (its first group, or
the whole match; the last match counts), else by default: the last "Answer: …" line (the last
number in it, when it has one), else the last number in the text (in digits or words). An
answer with none of these has no final result (`None`); callers then compare it as they always
did, and say so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from moa.errors import ConfigError
from moa.strategies.agreement import normalize

_ANSWER_LINE = re.compile(r"^[\W_]*(?:final\s+)?answer\s*(?:is)?\s*[:：]\s*(.+?)\s*$", re.I | re.M)
_NUMBER = re.compile(r"-?\d(?:[\d,]*\d)?(?:\.\d+)?")


@lru_cache(maxsize=64)
def compiled(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled (multi-line: ^ and $ match at each line), or ConfigError."""
    try:
        return re.compile(pattern, re.M)
    except re.error as exc:
        raise ConfigError(f"answer_pattern {pattern!r} is not a valid regex: {exc}") from None


@dataclass(frozen=True, slots=True)
class Final:
    """The final result as written (`value`) and the line it is on (`line`)."""

    value: str
    line: str

    @property
    def key(self) -> str:
        """What equal final results share (numbers as digits, case and punctuation aside)."""
        return normalize(self.value)


def _line_at(text: str, position: int) -> str:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return text[start : len(text) if end == -1 else end].strip()


def final_result(text: str, pattern: str | None = None) -> Final | None:
    """The final result of `text` (see the module's docstring), or None."""
    if pattern is not None:
        matches = list(compiled(pattern).finditer(text))
        if not matches:
            return None
        last = matches[-1]
        group = 1 if last.re.groups else 0
        value = last.group(group) or ""
        return Final(value.strip(), _line_at(text, last.start())) if value.strip() else None
    lines = list(_ANSWER_LINE.finditer(text))
    if lines:
        said = lines[-1].group(1)
        numbers = _NUMBER.findall(said)
        value = numbers[-1] if numbers else said
        if normalize(value):
            return Final(value, _line_at(text, lines[-1].start()))
    numbers = list(_NUMBER.finditer(text))
    if numbers:
        return Final(numbers[-1].group(0), _line_at(text, numbers[-1].start()))
    # A number in words ("Twenty-one."): the same number as its digits.
    spelled = [t for t in normalize(text).split() if _NUMBER.fullmatch(t)]
    return Final(spelled[-1], "") if spelled else None


def final_keys(texts: Sequence[str], patterns: Sequence[str | None]) -> tuple[list[str], int]:
    """Each text's final result as compared (the whole text where it has none), and how many
    had none."""
    keys, missing = [], 0
    for text, pattern in zip(texts, patterns, strict=True):
        found = final_result(text, pattern)
        if found is None or not found.key:
            missing += 1
            keys.append(text)
        else:
            keys.append(found.key)
    return keys, missing


def final_line(text: str, pattern: str | None = None) -> str:
    """The line of `text` its final result is on, else its last non-empty line."""
    found = final_result(text, pattern)
    if found is not None and found.line:
        return found.line
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text


def is_correct(text: str, answers: Sequence[str], pattern: str | None = None) -> bool:
    """`text`'s final result equals one of `answers` (compared as `vote` compares them); a
    number elsewhere in the text does not count."""
    found = final_result(text, pattern)
    return found is not None and found.key in {normalize(a) for a in answers}
