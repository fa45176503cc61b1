"""One upstream call for one agent: message shaping, context budget, rate limits, timeout and
retries.

The engine decides *what* to call and when; this module decides *how* one call is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from moa.agents import Agent
from moa.budget import (
    DEFAULT_CONTEXT_WINDOW,
    KNOWN_CONTEXT_WINDOWS,
    estimate_tokens,
    fit_references,
    messages_tokens,
)
from moa.cache import ResponseCache, replay
from moa.errors import ProviderError
from moa.prompts import fold_system, inject_references
from moa.providers.base import Provider
from moa.providers.registry import Registry
from moa.retry import RetryPolicy, with_retries
from moa.types import ChatRequest, Completion, Message, Sampling, StreamChunk

T = TypeVar("T")
# Room kept for the answer when neither the call nor the recipe sets max_tokens.
DEFAULT_ANSWER_TOKENS = 1024


@dataclass(slots=True)
class Caller:
    registry: Registry
    retry: RetryPolicy
    timeout_s: float
    defaults: Sampling
    cache: ResponseCache | None = None  # reproducible calls only; see moa.cache
    # provider:model -> has a system role; asked once (a local model loads to answer it), not
    # through a worker thread on every call.
    _system_roles: dict[tuple[str, str], bool] = field(default_factory=dict)

    def check(self, agent: Agent) -> None:
        """Resolve the agent's provider now, so a missing key or extra fails before any call."""
        self.registry.resolve(agent.model)

    # -- what the engine calls ---------------------------------------------------------------

    async def propose(
        self,
        agent: Agent,
        messages: Sequence[Message],
        references: Sequence[str],
        prompt: str,
        overrides: Sampling,
    ) -> tuple[Completion, int]:
        """A whole answer, and the attempts it took."""
        return await self._send(agent, messages, references, prompt, overrides, self.complete)

    async def open_stream(
        self,
        agent: Agent,
        messages: Sequence[Message],
        references: Sequence[str],
        prompt: str,
        overrides: Sampling,
    ) -> tuple[AsyncIterator[StreamChunk], int]:
        """A stream whose first chunk has arrived, and the attempts it took."""
        return await self._send(agent, messages, references, prompt, overrides, self.stream)

    async def _send(
        self,
        agent: Agent,
        messages: Sequence[Message],
        references: Sequence[str],
        prompt: str,
        overrides: Sampling,
        send: Callable[[Provider, ChatRequest], Awaitable[T]],
    ) -> T:
        async def build_and_send(squeeze: float) -> T:
            provider, request = await self.build_request(
                agent, messages, references, prompt, overrides, squeeze=squeeze
            )
            return await send(provider, request)

        try:
            return await build_and_send(1.0)
        except ProviderError as error:
            if error.kind != "context_length":
                raise
            # The model rejected our estimate: halve the room for references, once.
            return await build_and_send(0.5)

    # -- building blocks ---------------------------------------------------------------------

    async def build_request(
        self,
        agent: Agent,
        messages: Sequence[Message],
        references: Sequence[str],
        prompt: str,
        overrides: Sampling,
        *,
        squeeze: float = 1.0,
    ) -> tuple[Provider, ChatRequest]:
        provider, model = self.registry.resolve(agent.model)
        shaped = list(messages)
        if agent.system is not None:
            if shaped and shaped[0]["role"] == "system":
                merged = agent.system + "\n\n" + shaped[0]["content"]
                shaped[0] = Message(role="system", content=merged)
            else:
                shaped.insert(0, Message(role="system", content=agent.system))
        # The run's explicit overrides (CLI flags, API request) win over the agent's own
        # settings, which win over the recipe's defaults.
        sampling = overrides.merged_over(agent.sampling.merged_over(self.defaults))
        if references:
            overhead = messages_tokens(shaped) + estimate_tokens(prompt) + 8
            room = self.context_window(agent, provider, model)
            room -= sampling.max_tokens or DEFAULT_ANSWER_TOKENS
            if squeeze < 1.0:
                # The model rejected our estimate: shrink what we actually sent.
                sent = overhead + sum(estimate_tokens(r) for r in references)
                room = int(min(room, sent) * squeeze)
            references = fit_references(references, available_tokens=room, overhead_tokens=overhead)
        system_role = agent.system_role
        if system_role is None:
            system_role = self._system_roles.get((provider.name, model))
        if system_role is None:
            system_role = await asyncio.to_thread(provider.supports_system_role, model)
            self._system_roles[(provider.name, model)] = system_role
        shaped = inject_references(shaped, references, prompt=prompt)
        if not system_role:
            shaped = fold_system(shaped)
        return provider, ChatRequest(model, tuple(shaped), sampling, self.timeout_s)

    def context_window(self, agent: Agent, provider: Provider, model: str) -> int:
        if agent.context_window is not None:
            return agent.context_window
        reported = getattr(provider, "context_window", None)
        if callable(reported) and (window := reported(model)) is not None:
            return int(window)
        return KNOWN_CONTEXT_WINDOWS.get(model, DEFAULT_CONTEXT_WINDOW)

    def _policy(self, provider: Provider) -> RetryPolicy:
        return self.registry.retry_policy(provider.name) or self.retry

    async def _attempt(
        self, provider: Provider, request: ChatRequest, call: Callable[[], Awaitable[T]]
    ) -> T:
        """One try: wait for the rate limits, bound it by the timeout, teach the limiters."""
        limiters = self.registry.limits.for_call(provider.name, request.model)
        cost = messages_tokens(request.messages) + (request.sampling.max_tokens or 0)
        async with limiters[0].slot(cost), limiters[1].slot(cost):
            sent_at = limiters[0].now()
            try:
                async with asyncio.timeout(self.timeout_s):
                    value = await call()
            except TimeoutError:
                error = _timeout(provider, request, self.timeout_s)
                for limiter in limiters:
                    limiter.on_error(error, sent_at)
                raise error from None
            except ProviderError as error:
                for limiter in limiters:
                    limiter.on_error(error, sent_at)
                raise
        for limiter in limiters:
            limiter.on_success(sent_at)
        return value

    async def complete(self, provider: Provider, request: ChatRequest) -> tuple[Completion, int]:
        if self.cache is not None and (hit := self.cache.get(provider.name, request)):
            return hit, 0

        async def attempt() -> Completion:
            return await self._attempt(provider, request, lambda: provider.complete(request))

        completion, attempts = await with_retries(attempt, self._policy(provider))
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

        async def first_chunk() -> tuple[AsyncIterator[StreamChunk], StreamChunk]:
            chunks = aiter(provider.stream(request))
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                raise ProviderError.empty(provider.name, request.model, "stream") from None
            except BaseException:
                await _close(chunks)
                raise
            return chunks, first

        async def attempt() -> tuple[AsyncIterator[StreamChunk], StreamChunk]:
            return await self._attempt(provider, request, first_chunk)

        (chunks, first), attempts = await with_retries(attempt, self._policy(provider))
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
