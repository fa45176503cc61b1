"""The one protocol every provider implements, and what a provider says about each model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

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
