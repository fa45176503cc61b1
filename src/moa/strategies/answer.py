"""One answer as it streams in from the aggregator: its text, tool calls and log probabilities,
turned into the events clients see and, once whole, the run's `Choice`.

The client's stop sequences are moa's to apply, not the upstream's: the answer ends at the
first one, which is then known (Anthropic's `stop_sequence`; OpenAI-compatible servers say only
"stop"). Text that may be the start of one is held back until the next piece tells."""

from __future__ import annotations

from typing import Any

from moa.events import Event, Token, ToolCallDelta
from moa.tooluse import assemble, describe
from moa.trace import Choice
from moa.types import StreamChunk


class Answer:
    """One answer as it streams in: its text, tool-call deltas and log probabilities, ended at
    the first of `stops` (`stopped`)."""

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self.parts: list[str] = []
        self.deltas: list[dict[str, Any]] = []
        self.logprobs: list[dict[str, Any]] | None = None
        self.stops = tuple(s for s in stops if s)
        self.stopped: str | None = None  # the stop sequence it ended at
        self._held = ""  # text that may be the start of a stop sequence

    def add(self, chunk: StreamChunk, choice: int) -> list[Event]:
        if self.stopped is not None:
            return []
        events: list[Event] = []
        if chunk.logprobs:
            self.logprobs = (self.logprobs or []) + list(chunk.logprobs)
        text = self._until_stop(chunk.text)
        if text or chunk.logprobs:
            self.parts.append(text)
            events.append(Token(text, choice, chunk.logprobs))
        if chunk.tool_calls and self.stopped is None:
            self.deltas.extend(chunk.tool_calls)
            events.append(ToolCallDelta(chunk.tool_calls, choice))
        return events

    def flush(self, choice: int) -> list[Event]:
        """The text held back, once the answer has ended without reaching a stop sequence."""
        text, self._held = self._held, ""
        if not text:
            return []
        self.parts.append(text)
        return [Token(text, choice)]

    def _until_stop(self, piece: str) -> str:
        """What of `piece` may be shown now: up to a stop sequence, and not what may begin one."""
        if not self.stops:
            return piece
        text = self._held + piece
        found = [(text.find(stop), stop) for stop in self.stops if stop in text]
        if found:
            at, self.stopped = min(found)
            self._held = ""
            return text[:at]
        keep = max(len(stop) for stop in self.stops) - 1
        shown = len(text) - keep if keep else len(text)
        self._held = text[max(shown, 0) :]
        return text[: max(shown, 0)]

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
        if self.stopped is not None:
            finish_reason = "stop"
        elif calls and finish_reason in (None, "stop"):
            finish_reason = "tool_calls"  # some servers say "stop" after calling tools
        return Choice(self.text, calls, finish_reason, self.logprobs, model, self.stopped)
