"""Latency profiles for the fake upstream: how long a model takes, drawn from a distribution.

    up.latency("slow", Profile(ttft=LogNormal(median=0.05, sigma=0.8), tokens_per_s=200))

A profile gives the time to first token (fixed or log-normal, the heavy tail real APIs show)
and a token rate for the rest of the answer. Draws are deterministic per (seed, model, prompt):
the same prompt sent to the same model waits the same time whichever client sends it and in
whatever order the requests arrive, so two engines can be compared on identical latencies.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fixed:
    seconds: float

    def sample(self, rng: random.Random) -> float:
        return self.seconds


@dataclass(frozen=True, slots=True)
class LogNormal:
    """exp(N(log median, sigma)): half the draws are under `median`, the rest trail off."""

    median: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        return self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))


Distribution = Fixed | LogNormal


@dataclass(frozen=True, slots=True)
class Profile:
    """Time to first token, then `tokens_per_s` (None: the rest of the answer at once)."""

    ttft: Distribution | float = 0.0
    tokens_per_s: float | None = None
    seed: int = 0

    def first_token_s(self, model: str, key: str) -> float:
        ttft = Fixed(self.ttft) if isinstance(self.ttft, int | float) else self.ttft
        return max(0.0, ttft.sample(random.Random(f"{self.seed}:{model}:{key}")))

    @property
    def token_delay_s(self) -> float:
        return 1.0 / self.tokens_per_s if self.tokens_per_s else 0.0
