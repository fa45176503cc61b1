"""What a tuning run is asked (`Settings`) and what it found (`Found`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moa.batch.items import BatchStats
from moa.engine.mixture import MoA
from moa.evaluation.tune.recipe import Candidate
from moa.evaluation.tune.samples import Prompt, Sampler
from moa.evaluation.tune.search import Score
from moa.recipes.schema import Recipe


@dataclass(frozen=True, slots=True)
class Settings:
    data: Path
    models: tuple[str, ...]
    aggregators: tuple[str, ...] = ()
    samples: int = 5
    temperature: float = 0.7
    holdout: float = 0.3
    seed: int = 0
    max_tokens: int | None = None
    system: str | None = None
    max_calls: int | None = None
    budget: float | None = None
    concurrency: int = 4
    leaders: int = 2  # how many leading panels the writers are tried on
    judge: str | None = None  # grades open-ended prompts against their `reference`
    batch_api: bool = False  # the sampling pass as provider Batch API jobs
    poll_s: float = 30.0  # how often those jobs are polled
    # `[providers.NAME]` tables (as a recipe has them) every recipe tune builds and writes holds.
    providers: dict[str, Any] = field(default_factory=dict)
    # A candidate's own model-table keys, as a recipe writes them: system, examples, stop,
    # max_tokens, price (USD per million tokens, over the catalogue's), answer_pattern, …
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def sampler(self) -> Sampler:
        return Sampler(
            self.models,
            self.samples,
            self.temperature,
            self.max_tokens,
            self.system,
            self.providers,
            self.specs,
        )

    def drawn_with(self) -> dict[str, Any]:
        """What the samples on disk depend on: a rerun with other values cannot reuse them."""
        keep = {
            "models",
            "samples",
            "temperature",
            "holdout",
            "seed",
            "max_tokens",
            "system",
            "specs",
        }
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if k in keep}


@dataclass(slots=True)
class Found:
    """What a tuning run found: the report and `--json` are written from it."""

    settings: Settings
    sampling: BatchStats
    dev: list[Prompt]
    held: list[Prompt]
    skipped: dict[str, str]  # candidate -> why it gave no sample
    scores: list[Score]  # every picking configuration on the tuning split
    written: list[Score] = field(default_factory=list)  # writers on the tuning split
    candidates: dict[int, Candidate] = field(default_factory=dict)  # id(score) -> candidate
    notes: list[str] = field(default_factory=list)
    calls_after_sampling: int = 0
    chosen: Candidate | None = None
    top: Score | None = None  # the most accurate on the tuning split (chosen may be cheaper)
    baselines: dict[str, Candidate] = field(default_factory=dict)
    heldout: dict[str, Score] = field(default_factory=dict)  # system -> score, chosen first

    def candidate(self, score: Score) -> Candidate:
        return self.candidates.get(id(score), Candidate(score.config))


Build = Callable[[Recipe], MoA]


@dataclass(slots=True)
class Calls:
    """`--max-calls`: every call beyond the sampling pass, on both splits."""

    limit: int | None
    used: int = 0

    def fits(self, calls: int) -> bool:
        return self.limit is None or self.used + calls <= self.limit

    @property
    def left(self) -> str:
        return "no limit" if self.limit is None else f"{self.limit - self.used} left"
