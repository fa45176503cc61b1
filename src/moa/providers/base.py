"""The one protocol every provider implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from moa.types import ChatRequest, Completion, StreamChunk


@runtime_checkable
class Provider(Protocol):
    """A source of chat completions: an OpenAI-compatible API, a local model, a test double.

    `complete` returns the whole answer; `stream` yields it chunk by chunk, the last chunk
    carrying usage when the backend reports it. Both raise `moa.errors.ProviderError`.
    """

    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]: ...

    def supports_system_role(self, model: str) -> bool: ...

    async def aclose(self) -> None: ...
