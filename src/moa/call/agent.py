"""One model slot of a mixture: which model, with what settings and system prompt."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from moa.errors import ConfigError
from moa.types import Sampling


@dataclass(frozen=True, slots=True)
class Agent:
    """One model slot. The same model may fill several slots (Self-MoA) with other seeds."""

    model: str  # `provider:model`
    sampling: Sampling = field(default_factory=Sampling)
    system: str | None = None  # this slot's own system prompt
    system_role: bool | None = None  # None: ask the provider whether the template has one
    context_window: int | None = None  # tokens; None: the provider's or a known default
    timeout_s: float | None = None  # per call; None: the provider's, else the recipe's
    # Self-MoA: this slot fans out into `samples` calls with distinct seeds (moa makes the
    # calls itself: llama.cpp refuses n > 1 and Ollama ignores it).
    samples: int = 1
    # Few-shot example turns (question, answer) put before the conversation: how a small model
    # is shown the form of answer wanted (a base model sees them as a Q:/A: prompt).
    examples: tuple[tuple[str, str], ...] = ()
    # How `vote`, `medoid` and adaptive sampling find this slot's final result in its answer
    # (a regex; None: the last "Answer: …" line, else the last number; moa.strategies.final).
    answer_pattern: str | None = None
    # A layer does not move on without this slot's answer (or its failure): its quorum and
    # deadline, `stop_when` and a staircase's early steps wait for it; its own timeout holds.
    required: bool = False

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"{self.model}: samples must be at least 1, got {self.samples}")
        if self.answer_pattern is not None:
            try:
                re.compile(self.answer_pattern)
            except re.error as exc:
                raise ConfigError(
                    f"{self.model}: answer_pattern {self.answer_pattern!r} is not a valid "
                    f"regex: {exc}"
                ) from None

    @classmethod
    def of(cls, value: str | Agent) -> Agent:
        return value if isinstance(value, Agent) else cls(value)

    def sampling_under(self, overrides: Sampling, defaults: Sampling) -> Sampling:
        """The settings a call of this slot is sent: the run's explicit overrides (CLI flags,
        API request) win over the slot's own settings, which win over the recipe's defaults."""
        return overrides.merged_over(self.sampling.merged_over(defaults))

    def fan_out(self) -> tuple[Agent, ...]:
        """One agent per sample, seeded base + i (or i + 1 without a base seed), so that the
        samples differ even at the same temperature and each stays reproducible."""
        if self.samples == 1:
            return (self,)
        base = self.sampling.seed
        return tuple(
            replace(
                self,
                samples=1,
                sampling=replace(self.sampling, seed=(base + i) if base is not None else i + 1),
            )
            for i in range(self.samples)
        )


def slot_labels(agents: Sequence[Agent], sampling: Sequence[Sampling]) -> list[str]:
    """How people read a layer's slots, given the settings each is sent: its model, and where
    the model fills several slots, its number among them and what sets it apart
    (`local:smollm2 #2 · T=0.7, seed 2`) — five cards all reading `local:smollm2` say nothing."""
    counts = Counter(a.model for a in agents)
    numbered: Counter[str] = Counter()
    labels = []
    for agent, settings in zip(agents, sampling, strict=True):
        if counts[agent.model] == 1:
            labels.append(agent.model)
            continue
        numbered[agent.model] += 1
        label = f"{agent.model} #{numbered[agent.model]}"
        apart = [f"T={settings.temperature:g}"] if settings.temperature is not None else []
        if settings.seed is not None:
            apart.append(f"seed {settings.seed}")
        labels.append(f"{label} · {', '.join(apart)}" if apart else label)
    return labels
