"""Plain data passed between the engine and the providers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

Role = Literal["system", "user", "assistant", "tool"]


class Message(TypedDict):
    """One turn, in OpenAI's chat shape. `content` is always text (empty for an assistant turn
    that only called tools); the tool keys appear only in conversations that use tools."""

    role: Role
    content: str
    # An assistant turn's calls, as OpenAI sends them: {"id", "type": "function",
    # "function": {"name", "arguments"}}.
    tool_calls: NotRequired[list[dict[str, Any]]]
    tool_call_id: NotRequired[str]  # a `tool` turn: the call it answers
    name: NotRequired[str]


@dataclass(frozen=True, slots=True)
class Sampling:
    """Per-call generation settings; None means "the provider's default"."""

    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    # Nucleus sampling: only the likeliest tokens whose probabilities sum to top_p (0 <= p <= 1;
    # 0 keeps only the likeliest, as OpenAI's API allows).
    top_p: float | None = None
    # Only the k likeliest tokens (Anthropic's `top_k`): sent where the provider declares it.
    top_k: int | None = None

    def merged_over(self, base: Sampling) -> Sampling:
        """These settings, falling back to `base` where unset."""
        return Sampling(
            temperature=self.temperature if self.temperature is not None else base.temperature,
            max_tokens=self.max_tokens if self.max_tokens is not None else base.max_tokens,
            seed=self.seed if self.seed is not None else base.seed,
            stop=self.stop if self.stop is not None else base.stop,
            top_p=self.top_p if self.top_p is not None else base.top_p,
            top_k=self.top_k if self.top_k is not None else base.top_k,
        )


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """A JSON schema the answer must follow; each provider sends it in its own shape."""

    name: str
    schema: Mapping[str, Any]
    # OpenAI's `strict`: the provider must follow the schema exactly (its grammar), not try to.
    strict: bool = False
    # "json_object": any JSON object (`schema` is empty); "json_schema": one following `schema`.
    kind: Literal["json_schema", "json_object"] = "json_schema"


@dataclass(frozen=True, slots=True)
class Tools:
    """The functions the answering model may call, in OpenAI's shape, passed through as given."""

    specs: tuple[dict[str, Any], ...]
    choice: str | dict[str, Any] | None = None  # "auto", "none", "required", or one function
    parallel: bool | None = None  # `parallel_tool_calls`


@dataclass(frozen=True, slots=True)
class Answering:
    """What a client asks of the final answer only (the aggregator's call), never of proposers:
    they answer in text, and their answers reach the aggregator as references."""

    tools: Tools | None = None
    response_format: ResponseFormat | None = None
    # None: no log probabilities; k: each token's, with the k likeliest alternatives (0..20).
    top_logprobs: int | None = None
    n: int = 1  # answers over the same proposals


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str  # the provider's own model name, without the `provider:` prefix
    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)
    timeout_s: float | None = None
    # Sent only to models whose profile declares `json_schema`; others are asked in words.
    response_format: ResponseFormat | None = None
    tools: Tools | None = None  # sent only to a provider that declares `tools`
    top_logprobs: int | None = None  # see Answering


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # True when the upstream reported no usage and moa counted the tokens itself.
    estimated: bool = False
    # USD, when known: what the provider reported (OpenRouter's `usage.cost`), or what
    # moa.pricing computed. None is "unknown", and a sum with an unknown part is unknown.
    cost_usd: float | None = None

    def __add__(self, other: Usage) -> Usage:
        cost = None
        if self.cost_usd is not None and other.cost_usd is not None:
            cost = self.cost_usd + other.cost_usd
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.estimated or other.estimated,
            cost,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


NO_USAGE = Usage(cost_usd=0.0)  # the start of a sum: nothing used, nothing spent


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    attempts: int = 1  # upstream tries it took; 0 when answered from the cache
    tool_calls: tuple[dict[str, Any], ...] = ()  # complete calls, in OpenAI's message shape
    logprobs: tuple[dict[str, Any], ...] = ()  # OpenAI's `logprobs.content` entries
    runtime: str | None = None  # what computed it, where the provider says
    model: str | None = None  # the model that answered, as the provider names it, if it says


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed answer: text, and on the last chunk usage and finish reason.

    `attempts` is set on the first chunk by the retry policy (0 for a cached answer)."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    attempts: int | None = None
    # OpenAI's tool-call deltas ({"index", "id"?, "function": {"name"?, "arguments"}}).
    tool_calls: tuple[dict[str, Any], ...] = ()
    logprobs: tuple[dict[str, Any], ...] = ()  # the `logprobs.content` entries of this piece
    # What computed the answer, where the provider says (the embedded model: its threads).
    runtime: str | None = None
    model: str | None = None  # the model that answered (on the last chunk), if the provider says


@dataclass(slots=True)
class Tally:
    """A stream's chunks as they add up — its text, the last usage and finish reason the
    upstream sent, the attempts its first chunk carried: every consumer of a stream keeps its
    books this one way."""

    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    attempts: int | None = None
    runtime: str | None = None

    def add(self, chunk: StreamChunk) -> None:
        if chunk.text:
            self.parts.append(chunk.text)
        self.usage = chunk.usage or self.usage
        self.runtime = chunk.runtime or self.runtime
        self.finish_reason = chunk.finish_reason or self.finish_reason
        if chunk.attempts is not None:
            self.attempts = chunk.attempts

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def completion(self) -> Completion:
        """The stream as one whole answer (the text only: tool calls are assembled apart)."""
        return Completion(
            self.text, self.usage or Usage(), self.finish_reason, runtime=self.runtime
        )
