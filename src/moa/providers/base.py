"""The one protocol every provider implements, what a provider says about each model, and the
small protocol of a provider's Batch API (its jobs and their rows are plain data here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from moa.tokens import DEFAULT_CONTEXT_WINDOW, TokenCounter, estimate_tokens
from moa.types import ChatRequest, Completion, StreamChunk

# How a provider continues an answer it has already begun: "assistant" — the server continues a
# final assistant message (vLLM's continue_final_message, llama.cpp's server); "kv" — a local
# model that keeps its KV cache; "none" — it cannot.
Continuation = Literal["none", "assistant", "kv"]


@dataclass(frozen=True, slots=True)
class BatchAPI:
    """An OpenAI-format Batch API (`/v1/files` + `/v1/batches`) and its documented limits:
    `moa batch --batch-api` splits each layer's jobs at them and prices its calls at
    `discount` off the real-time price (0.5: half price)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    discount: float = 0.5
    completion_window: str = "24h"


# A Batch API job's statuses once it has ended, and the error codes of requests a job never ran
# (resubmitted, or sent real-time) as opposed to requests that ran and failed.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
UNRUN = frozenset({"batch_expired", "batch_cancelled"})


@dataclass(frozen=True, slots=True)
class BatchJob:
    """A Batch API job as its provider last showed it."""

    id: str
    status: str
    input_file_id: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: tuple[tuple[int | None, str, str], ...] = ()  # (line, code, message): validation

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One request's line of a job's output or error file."""

    custom_id: str
    status: int | None  # the HTTP status it was answered with; None: it never ran
    body: dict[str, Any] = field(default_factory=dict)
    code: str | None = None  # the error's code (`batch_expired`, `context_length_exceeded`, …)
    message: str = ""

    @property
    def ran(self) -> bool:
        return self.code not in UNRUN


class BatchClient(Protocol):
    """One provider's Batch API, as `moa batch --batch-api` drives it (`Registry.batch_client`
    makes it): requests written as lines of a file, uploaded, a job made over the file, polled,
    its rows read back into the `Completion` a real-time call would give, or cancelled."""

    name: str

    @property
    def base_url(self) -> str: ...  # where the jobs live, recorded for `moa batch cancel`

    @property
    def api_key_env(self) -> str | None: ...

    def line(self, custom_id: str, request: ChatRequest) -> bytes: ...

    async def upload(self, content: bytes) -> str: ...

    async def create(
        self, input_file_id: str, window: str, metadata: dict[str, str]
    ) -> BatchJob: ...

    async def retrieve(self, job_id: str) -> BatchJob: ...

    async def cancel(self, job_id: str) -> BatchJob: ...

    async def find(self, input_file_id: str) -> BatchJob | None:
        """The job created over `input_file_id`, if any (one created just before a crash)."""
        ...

    async def rows(self, file_id: str | None) -> list[BatchRow]: ...

    def completion(self, request: ChatRequest, row: BatchRow) -> Completion:
        """What a request answered: its completion, or the upstream error it failed with."""
        ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an endpoint accepts beyond plain chat, declared per provider rather than guessed
    per call (a recipe may declare them for its own `[providers.NAME]`)."""

    tools: bool = False
    json_schema: bool = False
    logprobs: bool = False
    n: bool = False
    continuation: Continuation = "none"
    # System messages anywhere in a conversation, in place (OpenAI's API); without it a
    # later system turn joins the user or tool turn beside it (moa.call.prompts.place_system).
    system_turns: bool = False
    top_k: bool = False  # sampling from the k likeliest tokens (Anthropic's `top_k`)
    batch_api: BatchAPI | None = None  # None: no Batch API (calls are real-time only)
    # Two fields the OpenAI-compatible adapter has always sent, so True unless an API is known
    # to refuse or ignore them (Mistral refuses both as unknown inputs). False: not sent —
    # seeded samples still differ by temperature but are not reproducible, and a stream's
    # usage is read from its chunks if the API sends it anyway, else estimated (and marked so).
    seed: bool = True  # OpenAI's `seed`
    stream_usage: bool = True  # `stream_options: {"include_usage": true}`


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """One model as its provider knows it: window, chat template, capabilities, token counter."""

    context_window: int = DEFAULT_CONTEXT_WINDOW
    system_role: bool = True  # False: the template has none (Gemma's); fold it into a user turn
    capabilities: Capabilities = field(default_factory=Capabilities)
    count_tokens: TokenCounter = estimate_tokens


@runtime_checkable
class Provider(Protocol):
    """A source of chat completions: an OpenAI-compatible API, a local model, a test double, or
    a policy (rate limit, timeout, retry, cache) wrapping another provider.

    `complete` returns the whole answer; `stream` yields it chunk by chunk, the last chunk
    carrying usage and the finish reason. Both raise `moa.errors.ProviderError` subclasses.
    `profile` may block (a local model loads to answer it): call it off the event loop.
    """

    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]: ...

    def profile(self, model: str) -> ModelProfile: ...

    async def aclose(self) -> None: ...
