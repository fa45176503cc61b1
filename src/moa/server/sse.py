"""OpenAI's response shapes: the `chat.completion` body and the `chat.completion.chunk` stream."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from moa.events import Event, Token, ToolCallDelta
from moa.trace import Choice, Result
from moa.types import Usage

DONE = "data: [DONE]\n\n"


def usage_body(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def finish_reason(result: Result) -> str:
    """The first answer's reason, in OpenAI's vocabulary ("length" tells clients the answer was
    cut by max_tokens); anything an upstream calls otherwise is a plain stop."""
    if result.choices:
        return choice_finish(result.choices[0])
    answered = [c for c in result.calls if c.role == "aggregator" and c.ok]
    reason = answered[-1].finish_reason if answered else None
    return reason if reason in ("length", "content_filter") else "stop"


def choice_finish(choice: Choice) -> str:
    if choice.tool_calls:
        return "tool_calls"
    reason = choice.finish_reason
    return reason if reason in ("length", "content_filter") else "stop"


def choice_body(index: int, choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.text, "refusal": None}
    if choice.tool_calls:
        message["tool_calls"] = choice.tool_calls
        message["content"] = choice.text or None
    return {
        "index": index,
        "message": message,
        "logprobs": None if choice.logprobs is None else {"content": choice.logprobs},
        "finish_reason": choice_finish(choice),
    }


def event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


@dataclass(frozen=True, slots=True)
class Completion:
    """The identity every chunk of one answer shares."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def body(
        self, choices: list[Choice], usage: Usage, trace: dict[str, Any] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice_body(i, c) for i, c in enumerate(choices)],
            "usage": usage_body(usage),
        }
        if trace is not None:
            body["moa"] = trace
        return body

    def chunk(
        self,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        *,
        with_usage: bool = False,
        index: int = 0,
        logprobs: tuple[dict[str, Any], ...] = (),
        moa: dict[str, Any] | None = None,
    ) -> str:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": index,
                    "delta": delta,
                    "logprobs": {"content": list(logprobs)} if logprobs else None,
                    "finish_reason": finish_reason,
                }
            ],
        }
        if with_usage:
            # OpenAI sends `usage: null` on every chunk when usage was asked for.
            payload["usage"] = None
        if moa is not None:
            payload["moa"] = moa
        return event(payload)

    def role_chunk(self, *, with_usage: bool, index: int = 0) -> str:
        return self.chunk({"role": "assistant", "content": ""}, with_usage=with_usage, index=index)

    def finish_chunk(
        self,
        finish_reason: str,
        *,
        with_usage: bool,
        index: int = 0,
        moa: dict[str, Any] | None = None,
    ) -> str:
        """A choice's last chunk; the run's last one carries the `moa` extension (whether the
        run was degraded, what it cost), as a stream's headers left before the run ended."""
        return self.chunk({}, finish_reason, with_usage=with_usage, index=index, moa=moa)

    def usage_chunk(self, usage: Usage, moa: dict[str, Any] | None = None) -> str:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_body(usage),
        }
        if moa is not None:
            payload["moa"] = moa  # cost and failures, beside the usage they belong to
        return event(payload)

    def trace_event(self, trace: dict[str, Any]) -> str:
        # Its own object type, after the answer, with empty `choices` like the usage chunk, so
        # clients that only read choices[].delta pass over it.
        return event(
            {
                "id": self.id,
                "object": "moa.trace",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "moa": trace,
            }
        )


class Pieces:
    """The chunks an event becomes: each answer's role chunk before its first piece, then
    its text (with log probabilities, when asked) and tool-call deltas under its index."""

    def __init__(self, completion: Completion, with_usage: bool) -> None:
        self.completion = completion
        self.with_usage = with_usage
        self.started: set[int] = set()

    def of(self, item: Event) -> list[str]:
        if not isinstance(item, Token | ToolCallDelta):
            return []
        out: list[str] = []
        c, index = self.completion, item.choice
        if index not in self.started:
            out.append(self.start(index))
        if isinstance(item, Token):
            delta: dict[str, Any] = {"content": item.text}
            logprobs = item.logprobs
        else:
            delta, logprobs = {"tool_calls": list(item.deltas)}, ()
        out.append(c.chunk(delta, with_usage=self.with_usage, index=index, logprobs=logprobs))
        return out

    def start(self, index: int) -> str:
        self.started.add(index)
        return self.completion.role_chunk(with_usage=self.with_usage, index=index)
