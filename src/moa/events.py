"""Events yielded by `MoA.stream()`, in the order things happen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moa.trace import CallRecord, Result


@dataclass(frozen=True, slots=True)
class ProposalStarted:
    layer: int
    index: int
    model: str


@dataclass(frozen=True, slots=True)
class ProposalDelta:
    """A piece of a proposer's answer as it is generated (one piece for whole-answer providers)."""

    layer: int
    index: int
    model: str
    text: str


@dataclass(frozen=True, slots=True)
class ProposalFinished:
    record: CallRecord


@dataclass(frozen=True, slots=True)
class ProposalFailed:
    record: CallRecord  # status "failed", or "cancelled" for a straggler past the deadline


@dataclass(frozen=True, slots=True)
class AggregatorStarted:
    layer: int
    model: str


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    choice: int = 0  # which of the run's `n` answers
    logprobs: tuple[dict[str, Any], ...] = ()  # OpenAI's `logprobs.content` entries, if asked


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the aggregator's tool calls, as OpenAI streams them."""

    deltas: tuple[dict[str, Any], ...]
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Done:
    result: Result


Event = (
    ProposalStarted
    | ProposalDelta
    | ProposalFinished
    | ProposalFailed
    | AggregatorStarted
    | Token
    | ToolCallDelta
    | Done
)
