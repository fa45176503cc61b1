"""The link a `--batch-api` run adds to every call's chain (`Caller.link`): a call to a provider
with a Batch API is parked in the collector and answered by a job's row; any other call goes on
down its chain real-time, as ever.

A parked call skips the rest of the chain (cache, rate limits, timeout, retries: a job has its
own pool and window); its answer is priced at the batch price (the provider's `discount` off).
A streamed call (the aggregator's) gets its whole answer as one chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from moa.batch.batch_api.collector import CURRENT, Collector, Waiter
from moa.call.caller import IN_FLIGHT, InFlight
from moa.call.chain import Wrapper, aclose
from moa.errors import ProviderError
from moa.pricing import PriceBook
from moa.providers.base import BatchAPI, BatchClient, Provider
from moa.providers.registry import Registry
from moa.tokens import messages_tokens
from moa.tooluse import as_deltas
from moa.types import ChatRequest, Completion, StreamChunk, Usage


@dataclass(slots=True)
class Parking:
    """What the parked calls of one run share: the barrier, the prices, each provider's Batch
    API and its client. Called with a chain, it is the link (`moa.call.chain.Link`)."""

    collector: Collector
    registry: Registry
    prices: PriceBook = field(default_factory=PriceBook)
    apis: dict[str, BatchAPI] = field(default_factory=dict)  # provider → its Batch API
    clients: dict[str, BatchClient] = field(default_factory=dict)

    def __call__(self, inner: Provider) -> Provider:
        return Parked(inner, self)

    def client(self, provider: str) -> BatchClient:
        if provider not in self.clients:
            self.clients[provider] = self.registry.batch_client(provider)
        return self.clients[provider]

    def waiter(
        self, flight: InFlight, request: ChatRequest, provider: str, item: str, window: int
    ) -> Waiter:
        api, record, model = self.apis[provider], flight.record, flight.call.agent.model
        client = self.client(provider)
        cid = self.collector.custom_id(item, provider, client.line("", request).decode())
        prompt = messages_tokens(request.messages)
        ceiling = request.sampling.max_tokens or max(window - prompt, 1)
        full = self.prices.cost(model, Usage(prompt, ceiling))
        layer = "?" if record is None else f"layer {record.layer}"
        if record is not None and record.role != "proposer":
            layer += f" ({record.role})"
        return Waiter(
            cid,
            item,
            provider,
            model,
            request,
            client.line(cid, request),
            layer,
            None if full is None else full * (1 - api.discount),
            future=asyncio.get_running_loop().create_future(),
            record=record,
        )

    def priced(self, completion: Completion, model: str, api: BatchAPI, layer: str) -> Completion:
        """The answer at the batch price, counted against the run's spending."""
        usage = completion.usage
        cost = usage.cost_usd
        if cost is None:
            full = self.prices.cost(model, usage)
            cost = None if full is None else full * (1 - api.discount)
        self.collector.spend(layer, cost)
        return replace(completion, usage=replace(usage, cost_usd=cost))


class Parked(Wrapper):
    """One provider's chain with parking in front of it."""

    def __init__(self, inner: Provider, parking: Parking) -> None:
        super().__init__(inner)
        self.parking = parking

    def _parks(self) -> tuple[InFlight, str] | None:
        """The call in flight and its prompt, when this call is one to park."""
        flight, item = IN_FLIGHT.get(), CURRENT.get(None)
        if self.name not in self.parking.apis or flight is None or item is None:
            return None
        return flight, item

    async def complete(self, request: ChatRequest) -> Completion:
        parks = self._parks()
        if parks is None:
            with self.parking.collector.realtime(CURRENT.get(None)):
                return await self.inner.complete(request)
        flight, item = parks
        window = flight.call.agent.context_window or self.profile(request.model).context_window
        waiter = self.parking.waiter(flight, request, self.name, item, window)
        collector = self.parking.collector
        row = await collector.ask(waiter)
        if not row.ran:  # its job ended before it ran, and real-time was asked for
            collector.note(item, flight.record, f"sent real-time: its batch job ended {row.code}")
            with collector.realtime(item):
                return await self.inner.complete(request)
        completion = self.parking.client(self.name).completion(request, row)  # raises a failure
        api = self.parking.apis[self.name]
        completion = self.parking.priced(completion, waiter.model, api, waiter.layer)
        if not (completion.text.strip() or completion.tool_calls):
            raise ProviderError.empty(self.name, request.model)
        return completion

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        if self._parks() is None:
            with self.parking.collector.realtime(CURRENT.get(None)):
                chunks = aiter(self.inner.stream(request))
                try:
                    async for chunk in chunks:
                        yield chunk
                finally:
                    await aclose(chunks)
            return
        c = await self.complete(request)
        yield StreamChunk(
            c.text,
            c.usage,
            c.finish_reason,
            attempts=1,
            tool_calls=as_deltas(c.tool_calls),
            logprobs=c.logprobs,
        )
