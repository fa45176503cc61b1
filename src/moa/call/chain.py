"""Policies that are themselves providers wrapping a provider, as httpx chains transports:

    Cached(Retrying(RateLimited(TimeoutBound(provider))))

composed in one place, `chain()`. Each does one thing and passes the rest through, so a new
concern (a budget, a shared limiter, `moa batch --batch-api` parking calls for a job) is one
more wrapper, not a branch inside a god object.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

from moa import telemetry
from moa.errors import ProviderError, UpstreamTimeoutError
from moa.policies.cache import Cache
from moa.policies.ratelimit import Limiter, Limits
from moa.policies.retry import RetryPolicy, with_retries
from moa.providers.base import ModelProfile, Provider
from moa.tokens import messages_tokens
from moa.types import ChatRequest, Completion, StreamChunk


class Wrapper:
    """Passes every call through to `inner`; subclasses override what their policy changes."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name

    async def complete(self, request: ChatRequest) -> Completion:
        return await self.inner.complete(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        return self.inner.stream(request)

    def profile(self, model: str) -> ModelProfile:
        return self.inner.profile(model)

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimeoutBound(Wrapper):
    """`request.timeout_s` bounds a whole answer, a stream's first chunk and each gap between
    chunks (a stream that keeps talking is not cut off)."""

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            async with asyncio.timeout(request.timeout_s):
                return await self.inner.complete(request)
        except TimeoutError:
            raise _timeout(self.name, request) from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        chunks = aiter(self.inner.stream(request))
        limit = request.timeout_s
        loop = asyncio.get_running_loop()
        try:
            # One timer, re-armed for each wait (about half the CPU of a new timeout per
            # chunk); disarmed while the consumer holds a chunk, whose time is not ours to bound.
            async with asyncio.timeout_at(None if limit is None else loop.time() + limit) as timer:
                async for chunk in chunks:
                    timer.reschedule(None)
                    yield chunk
                    if limit is not None:
                        timer.reschedule(loop.time() + limit)
        except TimeoutError:
            raise _timeout(self.name, request) from None
        finally:
            await aclose(chunks)


class RateLimited(Wrapper):
    """Each attempt waits for the provider's and the model's limits, holds a concurrency slot
    until its answer (or stream) is finished, and teaches the limiters what the server said."""

    def __init__(self, inner: Provider, limits: Limits) -> None:
        super().__init__(inner)
        self.limits = limits

    def _limiters(self, request: ChatRequest) -> tuple[Limiter, Limiter]:
        return self.limits.for_call(self.name, request.model)

    async def complete(self, request: ChatRequest) -> Completion:
        by_provider, by_model = self._limiters(request)
        cost = _tokens(request)
        async with by_provider.slot(cost), by_model.slot(cost):
            sent_at = by_provider.now()
            try:
                completion = await self.inner.complete(request)
            except ProviderError as error:
                _learn_error((by_provider, by_model), error, sent_at)
                raise
        _learn_success((by_provider, by_model), sent_at)
        return completion

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        by_provider, by_model = self._limiters(request)
        cost = _tokens(request)
        async with by_provider.slot(cost), by_model.slot(cost):
            sent_at = by_provider.now()
            chunks = aiter(self.inner.stream(request))
            try:
                try:
                    first = await anext(chunks)
                except StopAsyncIteration:
                    return
                except ProviderError as error:
                    _learn_error((by_provider, by_model), error, sent_at)
                    raise
                # The server accepted the call once it starts answering.
                _learn_success((by_provider, by_model), sent_at)
                yield first
                async for chunk in chunks:
                    yield chunk
            finally:
                await aclose(chunks)


class Retrying(Wrapper):
    """Our one retry loop around each call. A stream is retried until its first chunk; after
    it a failure is not retried (someone may have seen the tokens). The attempts it took ride
    on the answer (`Completion.attempts`, the first chunk's `attempts`)."""

    def __init__(self, inner: Provider, policy: RetryPolicy) -> None:
        super().__init__(inner)
        self.policy = policy

    async def complete(self, request: ChatRequest) -> Completion:
        completion, attempts = await with_retries(
            lambda: self.inner.complete(request), self.policy, on_retry=_retried
        )
        return replace(completion, attempts=attempts)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        async def first_chunk() -> tuple[AsyncIterator[StreamChunk], StreamChunk]:
            chunks = aiter(self.inner.stream(request))
            try:
                return chunks, await anext(chunks)
            except StopAsyncIteration:
                raise ProviderError.empty(self.name, request.model, "stream") from None
            except BaseException:
                await aclose(chunks)
                raise

        (chunks, first), attempts = await with_retries(first_chunk, self.policy, on_retry=_retried)
        try:
            yield replace(first, attempts=attempts)
            async for chunk in chunks:
                yield chunk
        finally:
            await aclose(chunks)


class Cached(Wrapper):
    """Reproducible calls (temperature 0 or a fixed seed) answered from the response cache."""

    def __init__(self, inner: Provider, cache: Cache) -> None:
        super().__init__(inner)
        self.cache = cache

    async def complete(self, request: ChatRequest) -> Completion:
        if (hit := await self.cache.get(self.name, request)) is not None:
            return replace(hit, attempts=0)
        completion = await self.inner.complete(request)
        await self.cache.put(self.name, request, completion)
        return completion

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        if (hit := await self.cache.get(self.name, request)) is not None:
            yield StreamChunk(hit.text, hit.usage, hit.finish_reason, attempts=0)
            return
        chunks = self.cache.record(self.name, request, self.inner.stream(request))
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await aclose(chunks)


# One more wrapper, put around the whole chain: it sees a call before the cache does.
Link = Callable[[Provider], Provider]


def chain(
    provider: Provider,
    *,
    limits: Limits,
    retry: RetryPolicy,
    cache: Cache | None,
    links: Sequence[Link] = (),
) -> Provider:
    """Every policy a call goes through, outermost first: `links` (the last one outermost);
    the cache answers before anything is spent; each retry waits for the rate limits again;
    the timeout bounds one attempt only, not the time spent queued for a slot."""
    wrapped: Provider = Retrying(RateLimited(TimeoutBound(provider), limits), retry)
    if cache is not None:
        wrapped = Cached(wrapped, cache)
    for link in links:
        wrapped = link(wrapped)
    return wrapped


def _retried(attempt: int, error: ProviderError, wait_s: float) -> None:
    telemetry.retried(attempt, error.kind, error.status_code, wait_s)


def _tokens(request: ChatRequest) -> int:
    return messages_tokens(request.messages) + (request.sampling.max_tokens or 0)


def _learn_error(limiters: tuple[Limiter, ...], error: ProviderError, sent_at: float) -> None:
    for limiter in limiters:
        limiter.on_error(error, sent_at)


def _learn_success(limiters: tuple[Limiter, ...], sent_at: float) -> None:
    for limiter in limiters:
        limiter.on_success(sent_at)


def _timeout(provider: str, request: ChatRequest) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(
        f"{provider}:{request.model} gave no answer within {request.timeout_s:g}s "
        f"(raise `timeout_s` on the model, its provider or the recipe)",
        provider=provider,
        model=request.model,
    )


async def aclose(chunks: AsyncIterator[StreamChunk]) -> None:
    """Close a stream we stop reading, so its HTTP request (or llama.cpp job) ends now."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
