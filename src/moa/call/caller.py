"""One upstream call for one agent: the request builder, then the provider's policy chain.

The engine decides *what* to call and when; this module decides *how* one call is made:
`moa.call.request` shapes it (pure), `moa.call.chain` wraps the provider in cache / retry / rate
limits / timeout, and the Caller puts them together and owns the two rules that need both —
a context-length refusal is answered once with halved references, and an empty answer is a
failure only when nothing explains it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from moa import telemetry
from moa.call.agent import Agent
from moa.call.chain import Link, aclose, chain
from moa.call.request import Built, Call, build_request
from moa.errors import ContextLengthError, ProviderError
from moa.policies.cache import Cache
from moa.policies.retry import RetryPolicy
from moa.providers.base import ModelProfile, Provider
from moa.providers.registry import Registry
from moa.trace import CallRecord
from moa.types import ChatRequest, Completion, Sampling, StreamChunk


@dataclass(frozen=True, slots=True)
class InFlight:
    """The call a chain is taking, for a link that needs more of it than the request: a
    parked Batch-API call is priced by its agent's model and grouped by its record's layer."""

    call: Call
    record: CallRecord | None


# Set while the chain takes a call, up to its answer or its stream's first chunk.
IN_FLIGHT: ContextVar[InFlight | None] = ContextVar("moa_call_in_flight", default=None)


@contextmanager
def in_flight(call: Call, record: CallRecord | None) -> Iterator[None]:
    token = IN_FLIGHT.set(InFlight(call, record))
    try:
        yield
    finally:
        IN_FLIGHT.reset(token)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one `provider:model` goes, asked of the registry once: the provider, the model's
    name there and its profile, the provider wrapped in its policies, the provider's timeout
    and its server's host and port (for the call's span)."""

    provider: Provider
    model: str
    profile: ModelProfile
    chain: Provider
    timeout_s: float | None
    address: tuple[str, int] | None = None


@dataclass(slots=True)
class Caller:
    registry: Registry
    retry: RetryPolicy
    timeout_s: float
    defaults: Sampling
    cache: Cache | None = None  # reproducible calls only; see moa.policies.cache
    links: tuple[Link, ...] = ()  # around each chain, outermost last (see `link`)
    # Asked once per model (a local model loads to answer), not on every call; kept when a
    # closed registry makes a new client, as what a model is does not change with it.
    _profiles: dict[tuple[str, str], ModelProfile] = field(default_factory=dict)
    # Per model reference, for the provider instance it was made with: a registry that was
    # closed (or runs on a new event loop) makes new clients, which get new routes.
    _routes: dict[str, Route] = field(default_factory=dict)
    _pending: dict[str, asyncio.Future[Route]] = field(default_factory=dict)

    def link(self, link: Link) -> None:
        """Every later call goes through `link` too, around the rest of its chain
        (`moa batch --batch-api` parks the calls of Batch-API providers so)."""
        self.links = (*self.links, link)
        self._routes.clear()
        self._pending.clear()

    def check(self, agent: Agent) -> None:
        """Resolve the agent's provider now, so a missing key or extra fails before any call."""
        self.registry.resolve(agent.model)

    async def route(self, agent: Agent) -> Route:
        known = self._routes.get(agent.model)
        if known is not None and known.provider is self.registry.provider(known.provider.name):
            return known
        # The calls of a layer ask at once: the first asks the registry, the others wait for it.
        pending = self._pending.get(agent.model)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(self._new_route(agent.model))
            self._pending[agent.model] = pending
            pending.add_done_callback(partial(self._settled, agent.model))
        return await asyncio.shield(pending)

    def _settled(self, ref: str, done: asyncio.Future[Route]) -> None:
        if self._pending.get(ref) is done:
            del self._pending[ref]

    async def _new_route(self, ref: str) -> Route:
        provider, model = self.registry.resolve(ref)
        key = (provider.name, model)
        if key not in self._profiles:
            self._profiles[key] = await asyncio.to_thread(provider.profile, model)
        retry = self.registry.retry_policy(provider.name) or self.retry
        config = self.registry.config(provider.name)
        route = Route(
            provider,
            model,
            self._profiles[key],
            chain(
                provider,
                limits=self.registry.limits,
                retry=retry,
                cache=self.cache,
                links=self.links,
            ),
            config.timeout_s if config is not None else None,
            _address(config.base_url) if config is not None else None,
        )
        self._routes[ref] = route
        return route

    async def profile(self, agent: Agent) -> ModelProfile:
        return (await self.route(agent)).profile

    async def build(self, call: Call, *, squeeze: float = 1.0) -> tuple[Provider, Built]:
        return (await self._build(call, squeeze))[1:]

    async def _build(self, call: Call, squeeze: float = 1.0) -> tuple[Route, Provider, Built]:
        route = await self.route(call.agent)
        # The most specific timeout wins: the model's, then the provider's, then the recipe's.
        timeout = call.agent.timeout_s or route.timeout_s or self.timeout_s
        built = build_request(
            call,
            route.model,
            route.profile,
            defaults=self.defaults,
            timeout_s=timeout,
            squeeze=squeeze,
        )
        return route, route.chain, built

    async def stream(
        self, call: Call, record: CallRecord | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        """The answer, chunk by chunk (the first chunk carries the attempts it took). What was
        cut or changed to fit the window is noted on `record`."""
        route, provider, built = await self._build(call)
        with telemetry.chat(
            provider.name, built.request, record, streamed=True, address=route.address
        ) as seen:
            chunks = aiter(seen.within(aiter(provider.stream(built.request))))
            try:
                first = await _first(chunks, call, record)
            except ContextLengthError:
                # The model refused our estimate of what fits: halve the references' room, once.
                await aclose(chunks)
                provider, built = await self.build(call, squeeze=0.5)
                chunks = aiter(seen.within(aiter(provider.stream(built.request))))
                first = await _first(chunks, call, record)
            except StopAsyncIteration:
                raise ProviderError.empty(provider.name, built.request.model, "stream") from None
            except BaseException:
                await aclose(chunks)
                raise
            if record is not None:
                record.references_cut = built.cuts
                record.notes.extend(built.notes)
            said = bool(first.text.strip() or first.tool_calls)
            finish = first.finish_reason
            try:
                yield first
                async for chunk in chunks:
                    said = said or bool(chunk.text.strip() or chunk.tool_calls)
                    finish = chunk.finish_reason or finish
                    yield chunk
            finally:
                await aclose(chunks)
            # A continuation may add nothing: the answer it continues was already complete.
            if not said and not call.continuation and not _explains_empty(built.request, finish):
                raise ProviderError.empty(provider.name, built.request.model)

    async def complete(self, call: Call, record: CallRecord | None = None) -> Completion:
        """The whole answer at once (proposers nobody watches, judges, other one-shot calls)."""
        route, provider, built = await self._build(call)
        with (
            telemetry.chat(
                provider.name, built.request, record, streamed=False, address=route.address
            ) as seen,
            seen.current(),
            in_flight(call, record),
        ):
            try:
                completion = await provider.complete(built.request)
            except ContextLengthError:
                provider, built = await self.build(call, squeeze=0.5)
                completion = await provider.complete(built.request)
            seen.answered(completion)
            if record is not None:
                record.references_cut = built.cuts
                record.notes.extend(built.notes)
            if not (completion.text.strip() or completion.tool_calls) and not _explains_empty(
                built.request, completion.finish_reason
            ):
                raise ProviderError.empty(provider.name, built.request.model)
            return completion


async def _first(
    chunks: AsyncIterator[StreamChunk], call: Call, record: CallRecord | None
) -> StreamChunk:
    # Only the first step is the chain's taking of the call; the flag is down before a yield.
    with in_flight(call, record):
        return await anext(chunks)


def _explains_empty(request: ChatRequest, finish_reason: str | None) -> bool:
    """An empty answer is what was asked for when max_tokens ran out (a one-token classifier)
    or a stop sequence matched at once (a client's title generator); otherwise it is a fault."""
    return finish_reason == "length" or bool(request.sampling.stop)


def _address(base_url: str) -> tuple[str, int] | None:
    """The host and port of a provider's base URL (None: not a URL, as a local model has)."""
    parts = urlsplit(base_url)
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)
