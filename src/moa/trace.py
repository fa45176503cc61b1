"""What a run did: one record per upstream call, the final answer, and the totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from moa.tokens import Cut
from moa.types import NO_USAGE, Completion, StreamChunk, Tally, Usage

# proposer: a layer's answer; aggregator: the final answer (streamed); analyst: the `analysis`
# strategy's JSON; selector: `select`'s choice; ranker: a proposer ranking its peers (`rank`);
# synthesizer: one window's synthesis before the last (Self-MoA-Seq).
CallRole = Literal["proposer", "aggregator", "analyst", "selector", "ranker", "synthesizer"]
CallStatus = Literal["ok", "failed", "cancelled"]


class Failure(Protocol):
    """What a record keeps of a failed call (`moa.errors.ProviderError` is one): the trace
    sits below the error tree, which carries traces."""

    @property
    def attempts(self) -> int: ...

    @property
    def kind(self) -> str: ...


@dataclass(slots=True)
class AggregatorStep:
    """One call of a staircase aggregator (moa.engine.staircase): what it was sent and what it
    added."""

    prefix_chars: int  # the answer already shown, sent back for the model to continue
    references_chars: int  # the proposals so far, all together
    input_tokens: int = 0  # the whole prompt of this call, re-sent at every step
    tokens_added: int = 0  # answer chunks this call streamed before the next step replaced it
    final: bool = False  # the proposals were complete


@dataclass(slots=True)
class CallRecord:
    layer: int  # 1-based; the aggregator's layer is the last one
    index: int  # position of the model within its layer
    model: str  # `provider:model`
    role: CallRole
    status: CallStatus = "ok"
    output: str = ""
    error: str | None = None
    latency_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
    attempts: int = 1
    finish_reason: str | None = None  # the upstream's: "stop", "length" (hit max_tokens), …
    # How much of each reference was kept to fit the window (empty: nothing was cut).
    references_cut: list[Cut] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # settings changed to make the call fit
    error_kind: str | None = None  # the failure's kind: rate_limited, timeout, empty, …
    data: dict[str, Any] | None = None  # what a strategy parsed from the answer (analysis, …)
    dropped: str | None = None  # why this answer was not passed on (a layer's filter)
    # Why this proposal is the answer, as a verbatim strategy chose it (medoid, vote, select,
    # a layer's `stop_when`): the playground marks its card with it.
    chosen: str | None = None
    steps: list[AggregatorStep] = field(default_factory=list)  # a staircase aggregator's calls
    runtime: str | None = None  # what computed it, where the provider says (embedded threads)
    # Why a cancelled call was cut (see LOST): "deadline" / "quorum" (its layer moved on
    # without it), "staircase" (the answer ended before this proposal did), "budget".
    cut: str | None = None

    def take(self, answer: Tally | Completion | StreamChunk) -> None:
        """What the upstream said of the call — its usage, finish reason and the attempts it
        took — from a stream's tally so far, one chunk, or a whole answer."""
        self.usage = answer.usage or self.usage
        self.finish_reason = answer.finish_reason or self.finish_reason
        self.runtime = answer.runtime or self.runtime
        if answer.attempts is not None:
            self.attempts = answer.attempts

    def fail(self, error: Failure) -> None:
        self.status, self.error, self.attempts = "failed", str(error), error.attempts
        self.error_kind = error.kind

    @property
    def missing(self) -> str | None:
        """Why this call, which the run asked for, gave nothing to the answer (None: it did).
        A proposal dropped on purpose (`dropped`: a cluster filter) answered: not missing."""
        if self.status == "ok":
            return None
        if self.status == "cancelled":
            return self.cut or "cancelled"
        return "timeout" if self.error_kind == "timeout" else "failed"

    @property
    def shortened(self) -> bool:
        return any(c.kept < c.total for c in self.references_cut)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def cost_usd(self) -> float | None:
        """USD, reported or priced (see moa.pricing); None while unknown."""
        return self.usage.cost_usd

    @property
    def resent_input_tokens(self) -> int:
        """Prompt tokens a staircase sent more than once: every step's but the last."""
        return sum(step.input_tokens for step in self.steps[:-1])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_tokens"] = self.usage.input_tokens
        data["output_tokens"] = self.usage.output_tokens
        data["usage_estimated"] = self.usage.estimated
        data["cost_usd"] = self.usage.cost_usd
        data["missing"] = self.missing
        if self.steps:
            data["resent_input_tokens"] = self.resent_input_tokens
        else:
            del data["steps"]  # absent for every call but a staircase aggregator's
        del data["usage"]
        return data


@dataclass(slots=True)
class Choice:
    """One final answer: text and/or tool calls (a run asked for `n` has n of them)."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI's message shape
    finish_reason: str | None = None  # the aggregator's: "stop", "length", "tool_calls", …
    logprobs: list[dict[str, Any]] | None = None  # OpenAI's `logprobs.content`, when asked
    model: str | None = None  # the aggregator (or fallback) that answered
    stop_sequence: str | None = None  # the client's stop sequence the answer ended at


@dataclass(frozen=True, slots=True)
class Degradation:
    """Whether a run lost members it asked for, and which (see `CallRecord.missing`).

    `answered` of `asked` count proposer calls; a failed aggregator replaced by a fallback, or
    a failed side call (an analysis, a ranking), degrades the run as well. Members left out on
    purpose (a cluster filter's outliers, layers `stop_when` skipped) do not."""

    answered: int
    asked: int
    lost: tuple[CallRecord, ...]
    fallback: str | None = None  # the fallback aggregator that answered, if one did

    @property
    def degraded(self) -> bool:
        return bool(self.lost)

    def summary(self) -> str:
        """`3 of 5 answered`, and the fallback when one answered."""
        text = f"{self.answered} of {self.asked} answered"
        return f"{text}, fallback aggregator {self.fallback} answered" if self.fallback else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "degraded": self.degraded,
            "answered": self.answered,
            "asked": self.asked,
            "lost": [
                {
                    "layer": c.layer,
                    "index": c.index,
                    "model": c.model,
                    "role": c.role,
                    "reason": c.missing,
                    "message": c.error,
                }
                for c in self.lost
            ],
            "fallback": self.fallback,
        }


def asked_for(result: Result, proposals: list[CallRecord]) -> int | None:
    """How many answers the layer that wrote `proposals` was asked for, when it lost some
    (None: it lost none) — what a prompt over them says it holds of how many."""
    if not proposals:
        return None
    layer = result.proposals(proposals[0].layer)
    return len(layer) if any(c.missing for c in layer) else None


@dataclass(slots=True)
class Result:
    text: str = ""  # the first choice's text
    calls: list[CallRecord] = field(default_factory=list)
    latency_s: float = 0.0
    aggregator_model: str | None = None
    # How the answer was reached when it was not the plain path: a strategy's decisions and
    # fallbacks, filtered proposals. `stopped_early` says why later stages did not run.
    notes: list[str] = field(default_factory=list)
    stopped_early: str | None = None
    choices: list[Choice] = field(default_factory=list)
    # Under `invocation = "auto"`: whether the aggregator convened the layers (None: the
    # recipe always convenes them).
    panel_convened: bool | None = None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The first answer's tool calls (empty when it answered in text): run them, append the
        assistant turn and the `tool` results to the conversation, and run again."""
        return self.choices[0].tool_calls if self.choices else []

    @property
    def usage(self) -> Usage:
        total = NO_USAGE
        for call in self.calls:
            total = total + call.usage
        return total

    @property
    def cost_usd(self) -> float | None:
        """What the run cost in USD; None ("cost unknown") if any call's price is unknown —
        `known_cost_usd` and `unpriced` then say how much is known."""
        return self.usage.cost_usd

    @property
    def known_cost_usd(self) -> float:
        return sum(c.usage.cost_usd or 0.0 for c in self.calls)

    @property
    def unpriced(self) -> list[CallRecord]:
        """Calls whose cost is unknown (no reported cost, no known price)."""
        return [c for c in self.calls if c.usage.cost_usd is None]

    def proposals(self, layer: int | None = None) -> list[CallRecord]:
        """Proposer calls, of one layer or of all."""
        return [
            c for c in self.calls if c.role == "proposer" and (layer is None or c.layer == layer)
        ]

    @property
    def failures(self) -> list[CallRecord]:
        return [c for c in self.calls if not c.ok]

    @property
    def degradation(self) -> Degradation:
        proposals = self.proposals()
        lost = tuple(c for c in self.calls if c.missing is not None)
        failed_aggregator = any(c.role == "aggregator" for c in lost)
        fallback = None
        if failed_aggregator and self.aggregator_model is not None:
            fallback = self.aggregator_model
        return Degradation(sum(p.ok for p in proposals), len(proposals), lost, fallback)

    @property
    def degraded(self) -> bool:
        return self.degradation.degraded

    @property
    def warnings(self) -> list[str]:
        """What a user should know about how the answer was reached: shortened references and
        settings moa changed to make a call fit."""
        out: list[str] = []
        for call in self.calls:
            where = f"layer {call.layer} · {call.model}"
            out.extend(f"{where}: {note}" for note in call.notes)
            if call.shortened:
                kept = sum(c.kept for c in call.references_cut)
                total = sum(c.total for c in call.references_cut)
                out.append(
                    f"{where}: references cut to fit the context window "
                    f"({kept:,} of {total:,} characters kept)"
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "text": self.text,
            "tool_calls": self.tool_calls,
            "aggregator_model": self.aggregator_model,
            "latency_s": round(self.latency_s, 4),
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
            "cost_usd": usage.cost_usd,
            "calls": [c.to_dict() for c in self.calls],
            "notes": list(self.notes),
            "stopped_early": self.stopped_early,
            **self.degradation.to_dict(),
            "panel_convened": self.panel_convened,
        }
