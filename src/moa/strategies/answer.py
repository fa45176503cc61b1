"""One answer as it streams in from the aggregator: its text, tool calls and log probabilities,
turned into the events clients see and, once whole, the run's `Choice`."""

from __future__ import annotations

from typing import Any

from moa.events import Event, Token, ToolCallDelta
from moa.tooluse import assemble, describe
from moa.trace import Choice
from moa.types import StreamChunk


class Answer:
    """One answer as it streams in: its text, tool-call deltas and log probabilities."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.deltas: list[dict[str, Any]] = []
        self.logprobs: list[dict[str, Any]] | None = None

    def add(self, chunk: StreamChunk, choice: int) -> list[Event]:
        events: list[Event] = []
        if chunk.logprobs:
            self.logprobs = (self.logprobs or []) + list(chunk.logprobs)
        if chunk.text or chunk.logprobs:
            self.parts.append(chunk.text)
            events.append(Token(chunk.text, choice, chunk.logprobs))
        if chunk.tool_calls:
            self.deltas.extend(chunk.tool_calls)
            events.append(ToolCallDelta(chunk.tool_calls, choice))
        return events

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def seen(self) -> bool:
        """Whether the client has been shown any of it (no fallback may contradict it then)."""
        return bool(self.parts or self.deltas)

    def output(self) -> str:
        """What the trace records: the text, or the calls when the answer was only calls."""
        return self.text or (describe(assemble(self.deltas)) if self.deltas else "")

    def choice(self, finish_reason: str | None, model: str) -> Choice:
        calls = assemble(self.deltas)
        if calls and finish_reason in (None, "stop"):
            finish_reason = "tool_calls"  # some servers say "stop" after calling tools
        return Choice(self.text, calls, finish_reason, self.logprobs, model)
