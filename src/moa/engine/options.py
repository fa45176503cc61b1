"""One run's options, the same at every entry point.

`MoA.stream / arun / run`, `moa.stream / arun / run` and the server's runs take the same keyword
options (`Options`, declared once here) and turn them into one frozen `RunOptions`, which is
all a run reads; an option added here reaches every entry point at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from moa.errors import InputError
from moa.types import Answering, Message, Sampling, Tools

Prompt = str | Sequence[Message]
ToolList = Sequence[Mapping[str, Any]]  # OpenAI's {"type": "function", "function": {...}}


class Options(TypedDict, total=False):
    """The keyword options of every entry point that runs a mixture.

    `sampling` overrides every call of the run; `aggregator_sampling` only the aggregator's
    (over `sampling`), e.g. a client's max_tokens for the final answer. `max_cost_usd` (default:
    the MoA's) refuses any stage whose worst case would pass it (moa.engine.budget).
    `answering` (tools, response format, logprobs, n) applies to the aggregator only, and is
    refused before any call when an aggregator candidate's provider cannot honour it; `tools`
    is its shorthand for OpenAI-shaped function specs (the answer's calls are in
    `Result.tool_calls`).
    """

    sampling: Sampling | None
    aggregator_sampling: Sampling | None
    max_cost_usd: float | None
    answering: Answering | None
    tools: ToolList | None


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What one run is asked for, beyond its prompt. `proposal_deltas=False` asks proposers for
    whole answers (less CPU) and yields no `ProposalDelta`; a staircase's last layer streams
    regardless. `answer_deltas=False` asks the aggregator for its whole answer too (a staircase
    still streams it): some servers call tools properly only when not streaming
    (llama-cpp-python's)."""

    sampling: Sampling = field(default_factory=Sampling)
    aggregator_sampling: Sampling = field(default_factory=Sampling)
    max_cost_usd: float | None = None  # None: the MoA's own budget, if any
    answering: Answering = field(default_factory=Answering)
    proposal_deltas: bool = True
    answer_deltas: bool = True

    @classmethod
    def of(
        cls,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
        max_cost_usd: float | None = None,
        answering: Answering | None = None,
        tools: ToolList | None = None,
        proposal_deltas: bool = True,
    ) -> RunOptions:
        """From the keyword options (`Options`), `tools` folded into `answering`."""
        return cls(
            sampling or Sampling(),
            aggregator_sampling or Sampling(),
            max_cost_usd,
            with_tools(answering, tools),
            proposal_deltas,
        )

    @property
    def final(self) -> Sampling:
        """The aggregator's settings: its own over the run's."""
        return self.aggregator_sampling.merged_over(self.sampling)

    def whole(self) -> RunOptions:
        """These options for a caller that reads only the result: nobody sees the proposers'
        or the aggregator's words as they come, and whole answers cost less."""
        return replace(self, proposal_deltas=False, answer_deltas=False)


def with_tools(answering: Answering | None, tools: ToolList | None) -> Answering:
    answering = answering or Answering()
    if tools is None:
        return answering
    return replace(answering, tools=Tools(tuple(dict(t) for t in tools)))


def as_messages(prompt: Prompt) -> list[Message]:
    """A prompt string or a chat history, checked: the last turn must be a non-empty user turn,
    or a tool's result (an agent loop continuing after running the calls it was given); system
    turns may follow it (Claude Code ends its requests with one)."""
    if isinstance(prompt, str):
        prompt = [Message(role="user", content=prompt)]
    messages = [m.copy() for m in prompt]
    turns = [m for m in messages if m["role"] != "system"]
    if not turns or turns[-1]["role"] not in ("user", "tool"):
        raise InputError("the conversation must end with a user message (or a tool's result)")
    if turns[-1]["role"] == "user" and not turns[-1]["content"].strip():
        raise InputError("the prompt is empty: the last user message has no text")
    return messages
