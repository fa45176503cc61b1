"""The few statistics the evaluations report: proportions, means and their uncertainty."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; sound at small n and at 0% or 100%,
    where the normal approximation collapses to a zero-width interval."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean (sample standard deviation / sqrt(n)), as AlpacaEval reports."""
    n = len(values)
    if n < 2:
        return math.nan
    m = mean(values)
    variance = sum((v - m) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def finite(value: float) -> float | None:
    """NaN (a mean of nothing) as None, which JSON can hold."""
    return None if math.isnan(value) else value


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """A system against a baseline on the same questions: accuracy difference (system minus
    baseline, as a fraction), its 95% interval, and McNemar's exact two-sided p-value."""

    n: int
    gained: int  # right here, wrong in the baseline
    lost: int  # wrong here, right in the baseline
    difference: float
    low: float
    high: float
    p_value: float


def mcnemar_exact(gained: int, lost: int) -> float:
    """Exact McNemar test: under "no difference" each discordant pair is a fair coin flip,
    so the p-value is a two-sided binomial tail on min(gained, lost) of gained + lost."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(
    system: Sequence[bool], baseline: Sequence[bool], z: float = Z95
) -> PairedDifference:
    """Per question d = system - baseline in {-1, 0, 1}; the interval is the normal one on the
    mean of d (sample variance), which uses the pairing: questions both get right or both get
    wrong add no noise, unlike two independent proportions."""
    if len(system) != len(baseline):
        raise ValueError("paired_difference needs the same questions on both sides")
    n = len(system)
    gained = sum(1 for s, b in zip(system, baseline, strict=True) if s and not b)
    lost = sum(1 for s, b in zip(system, baseline, strict=True) if b and not s)
    if n == 0:
        return PairedDifference(0, 0, 0, math.nan, math.nan, math.nan, 1.0)
    d = (gained - lost) / n
    half = 0.0
    if n > 1:
        variance = (gained + lost - n * d * d) / (n - 1)
        half = z * math.sqrt(max(variance, 0.0) / n)
    return PairedDifference(n, gained, lost, d, d - half, d + half, mcnemar_exact(gained, lost))
