"""Step 2 of `moa tune`: every selection configuration scored from the samples already drawn.

A configuration that only *picks* among answers (the best member alone, `medoid`, `vote`,
adaptive rounds) needs no new call to be scored: its answer on a prompt is one of the draws the
sampling pass made, chosen by the same rules the engine applies (`moa.strategies.medoid`,
`moa.strategies.agreement`, `moa.engine.adaptive.verdict`). Its cost is the calls it would have
made. Thousands of configurations cost only CPU.

A panel's calls are laid out round-robin across its members: every member's greedy answer
first, then each member's first sample, and so on. That is the order the written recipe lists
them in, so `medoid`'s tie goes to a greedy answer and an adaptive first round hears every
member.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from moa.engine.adaptive import verdict
from moa.engine.layer import Rounds
from moa.evaluation.tune.samples import Draw, Prompt
from moa.strategies.agreement import agreement
from moa.strategies.final import final_result
from moa.strategies.medoid import gist, jaccard

ALONE, MEDOID, VOTE, ADAPTIVE = "alone", "medoid", "vote", "adaptive"
# The adaptive rounds tried: (first_round, round_size, stop_share).
ROUNDS = (Rounds(2, 1, 1.0), Rounds(3, 2, 1.0), Rounds(3, 2, 0.75), Rounds(2, 2, 0.6))


@dataclass(frozen=True, slots=True, order=True)
class Member:
    model: str
    draws: int  # 1: its greedy answer only; n: the greedy answer and n - 1 samples


@dataclass(frozen=True, slots=True)
class Config:
    members: tuple[Member, ...]
    strategy: str
    rounds: Rounds | None = None

    @property
    def calls(self) -> int:
        """Calls a prompt may make (adaptive rounds often make fewer)."""
        return sum(m.draws for m in self.members)

    def slots(self) -> list[tuple[str, int]]:
        """(model, draw number) in the panel's order: round-robin, greedy answers first."""
        deepest = max(m.draws for m in self.members)
        return [(m.model, d) for d in range(deepest) for m in self.members if d < m.draws]

    @property
    def label(self) -> str:
        panel = " + ".join(f"{m.model}×{m.draws}" if m.draws > 1 else m.model for m in self.members)
        if self.strategy == ALONE:
            return f"{panel} alone (T=0)"
        if self.rounds is not None:
            r = self.rounds
            return f"{panel} · adaptive {r.first}+{r.size}, stop {r.stop_share:.0%} · medoid"
        return f"{panel} · {self.strategy}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One configuration on one prompt: right or not, and what its calls cost."""

    correct: bool
    calls: int
    tokens: int
    seconds: float
    usd: float | None
    written: int = 0  # calls that would write text (vote's synthesis on a tie)


@dataclass(frozen=True, slots=True)
class Score:
    config: Config
    outcomes: tuple[Outcome, ...]

    @property
    def n(self) -> int:
        return len(self.outcomes)

    @property
    def correct(self) -> int:
        return sum(o.correct for o in self.outcomes)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def mean(self, what: str) -> float:
        values = [getattr(o, what) for o in self.outcomes]
        return sum(values) / len(values) if values else 0.0

    @property
    def usd(self) -> float | None:
        costs = [o.usd for o in self.outcomes]
        if any(c is None for c in costs):
            return None
        return sum(c for c in costs if c is not None) / len(costs) if costs else 0.0


def configurations(models: Sequence[str], draws: int) -> Iterator[Config]:
    """Every panel (each non-empty subset of `models`, each member with 1..`draws` calls)
    under each picking strategy; a single greedy call is the member alone."""
    for size in range(1, len(models) + 1):
        for subset in itertools.combinations(models, size):
            for counts in itertools.product(range(1, draws + 1), repeat=size):
                members = tuple(Member(m, c) for m, c in zip(subset, counts, strict=True))
                calls = sum(counts)
                if calls == 1:
                    yield Config(members, ALONE)
                    continue
                yield Config(members, MEDOID)
                yield Config(members, VOTE)
                for rounds in ROUNDS:
                    if rounds.first < calls:
                        yield Config(members, ADAPTIVE, rounds)


class Table:
    """One prompt's draws, read once: each draw's gist and final-result key, and the
    similarity of every pair, so that thousands of configurations reuse them."""

    def __init__(self, prompt: Prompt) -> None:
        self.prompt = prompt
        self.index: dict[tuple[str, int], int] = {}
        draws: list[Draw] = []
        for model, listed in prompt.draws.items():
            for number, draw in enumerate(listed):
                self.index[(model, number)] = len(draws)
                draws.append(draw)
        self.draws = draws
        finals = [final_result(d.text) if d.ok else None for d in draws]
        # As `final_keys` compares them: the final result, else the whole text.
        self.keys = [f.key if f and f.key else d.text for d, f in zip(draws, finals, strict=True)]
        gists = [
            gist(f.value if f is not None else d.text, prompt.question)
            for d, f in zip(draws, finals, strict=True)
        ]
        self.similar = [[jaccard(a, b) for b in gists] for a in gists]

    def outcome(self, config: Config) -> Outcome:
        picked = [self.index[slot] for slot in config.slots() if slot in self.index]
        written = 0
        if config.rounds is not None:
            picked = self._adaptive(picked, config.rounds)
        ok = [i for i in picked if self.draws[i].ok]
        if not ok:
            choice = None
        elif config.strategy == VOTE:
            found = agreement([self.keys[i] for i in ok])
            if found.winner is not None and found.count >= 2:
                choice = ok[found.winner]
            else:  # vote synthesizes here; the medoid stands in until a writer is run
                choice, written = self._medoid(ok), 1
        elif config.strategy == ALONE:
            choice = ok[0]
        else:
            choice = self._medoid(ok)
        spent = [self.draws[i] for i in picked]
        costs = [d.usd for d in spent]
        return Outcome(
            correct=choice is not None and self.draws[choice].correct,
            calls=len(spent) + written,
            tokens=sum(d.tokens for d in spent),
            seconds=sum(d.seconds for d in spent),
            usd=None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
            written=written,
        )

    def _medoid(self, ok: list[int]) -> int:
        """`moa.strategies.medoid.medoid` on these draws (the earliest on a tie)."""
        scores = [sum(self.similar[i][j] for j in ok) for i in ok]
        return ok[scores.index(max(scores))]

    def _adaptive(self, slots: list[int], rounds: Rounds) -> list[int]:
        """The calls an adaptive layer draws before `verdict` stops it, as the engine does."""
        drawn, size = 0, rounds.first
        while True:
            drawn = min(len(slots), drawn + size)
            size = rounds.size
            keys = [self.keys[i] for i in slots[:drawn] if self.draws[i].ok]
            if verdict(keys, len(slots) - drawn, rounds).stop or drawn == len(slots):
                return slots[:drawn]


def score(configs: Sequence[Config], prompts: Sequence[Prompt]) -> list[Score]:
    """Each configuration's outcome on every prompt, from the draws alone."""
    tables = [Table(p) for p in prompts]
    return [Score(c, tuple(t.outcome(c) for t in tables)) for c in configs]


def pareto(scores: Sequence[Score]) -> list[Score]:
    """The frontier: no other configuration is as accurate for fewer calls a prompt, or more
    accurate for as many. Cheapest first."""
    ranked = sorted(scores, key=lambda s: (s.mean("calls"), -s.accuracy, s.mean("tokens")))
    frontier: list[Score] = []
    for s in ranked:
        if not frontier or s.accuracy > frontier[-1].accuracy:
            frontier.append(s)
    return frontier


def rank_key(score: Score) -> tuple[int, float, float]:
    """Most right answers first; among equals, the fewest calls, then the fewest tokens."""
    return (-score.correct, score.mean("calls"), score.mean("tokens"))
