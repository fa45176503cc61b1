"""One upstream call for one agent: message shaping, timeout and retries.

The engine decides *what* to call and when; this module decides *how* one call is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from moa.agents import Agent
from moa.cache import ResponseCache, replay
from moa.errors import ProviderError
from moa.prompts import fold_system, inject_references
from moa.providers.base import Provider
from moa.providers.registry import Registry
from moa.retry import RetryPolicy, with_retries
from moa.types import ChatRequest, Completion, Message, Sampling, StreamChunk


@dataclass(slots=True)
class Caller:
    registry: Registry
    retry: RetryPolicy
    timeout_s: float
    defaults: Sampling
    cache: ResponseCache | None = None  # reproducible calls only; see moa.cache

    def check(self, agent: Agent) -> None:
        """Resolve the agent's provider now, so a missing key or extra fails before any call."""
        self.registry.resolve(agent.model)

    async def build_request(
        self,
        agent: Agent,
        messages: Sequence[Message],
        references: Sequence[str],
        prompt: str,
        overrides: Sampling,
    ) -> tuple[Provider, ChatRequest]:
        provider, model = self.registry.resolve(agent.model)
        shaped = list(messages)
        if agent.system is not None:
            if shaped and shaped[0]["role"] == "system":
                merged = agent.system + "\n\n" + shaped[0]["content"]
                shaped[0] = Message(role="system", content=merged)
            else:
                shaped.insert(0, Message(role="system", content=agent.system))
        system_role = agent.system_role
        if system_role is None:
            system_role = await asyncio.to_thread(provider.supports_system_role, model)
        shaped = inject_references(shaped, references, prompt=prompt)
        if not system_role:
            shaped = fold_system(shaped)
        # The run's explicit overrides (CLI flags, API request) win over the agent's own
        # settings, which win over the recipe's defaults.
        sampling = overrides.merged_over(agent.sampling.merged_over(self.defaults))
        return provider, ChatRequest(model, tuple(shaped), sampling, self.timeout_s)

    async def complete(self, provider: Provider, request: ChatRequest) -> tuple[Completion, int]:
        if self.cache is not None and (hit := self.cache.get(provider.name, request)):
            return hit, 0

        async def attempt() -> Completion:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await provider.complete(request)
            except TimeoutError:
                raise _timeout(provider, request, self.timeout_s) from None

        completion, attempts = await with_retries(attempt, self.retry)
        if self.cache is not None:
            self.cache.put(provider.name, request, completion)
        return completion, attempts

    async def stream(
        self, provider: Provider, request: ChatRequest
    ) -> tuple[AsyncIterator[StreamChunk], int]:
        """Open a stream and wait for its first chunk, retrying until then; afterwards a
        failure is not retried (the user has seen the tokens). The returned iterator yields
        the first chunk again, then the rest, each within the per-call timeout."""
        if self.cache is not None and (hit := self.cache.get(provider.name, request)):
            return replay(hit), 0

        async def attempt() -> tuple[AsyncIterator[StreamChunk], StreamChunk]:
            chunks = aiter(provider.stream(request))
            try:
                async with asyncio.timeout(self.timeout_s):
                    first = await anext(chunks)
            except TimeoutError:
                await _close(chunks)
                raise _timeout(provider, request, self.timeout_s) from None
            except StopAsyncIteration:
                raise ProviderError(
                    f"{provider.name}:{request.model} returned an empty stream",
                    provider=provider.name,
                    model=request.model,
                    kind="empty",
                ) from None
            except BaseException:
                await _close(chunks)
                raise
            return chunks, first

        (chunks, first), attempts = await with_retries(attempt, self.retry)
        rest = self._rest(provider, request, chunks, first)
        if self.cache is not None:
            rest = self.cache.record(provider.name, request, rest)
        return rest, attempts

    async def _rest(
        self,
        provider: Provider,
        request: ChatRequest,
        chunks: AsyncIterator[StreamChunk],
        first: StreamChunk,
    ) -> AsyncIterator[StreamChunk]:
        try:
            yield first
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise _timeout(provider, request, self.timeout_s) from None
                yield chunk
        finally:
            await _close(chunks)


def _timeout(provider: Provider, request: ChatRequest, seconds: float) -> ProviderError:
    return ProviderError(
        f"{provider.name}:{request.model} gave no answer within {seconds:g}s "
        f"(raise it with --timeout or `timeout_s` in the recipe)",
        provider=provider.name,
        model=request.model,
        kind="timeout",
    )


async def _close(chunks: AsyncIterator[StreamChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
