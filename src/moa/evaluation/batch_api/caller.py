"""The caller of a `--batch-api` run: a call to a provider with a Batch API is parked in the
collector and answered by a job's row; any other call is made real-time, as ever.

A parked call skips the real-time policies (rate limits, timeout, retries: a job has its own
pool and window); its answer is priced at the batch price (the provider's `discount` off).
A streamed call (the aggregator's) gets its whole answer as one chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

from moa import telemetry
from moa.call.caller import Caller
from moa.call.request import Call
from moa.errors import ProviderError
from moa.evaluation.batch_api.collector import CURRENT, Collector, Waiter
from moa.pricing import PriceBook
from moa.providers.base import BatchAPI
from moa.providers.openai.batches import BatchClient
from moa.tokens import messages_tokens
from moa.tooluse import as_deltas
from moa.trace import CallRecord
from moa.types import ChatRequest, Completion, StreamChunk, Usage


@dataclass(slots=True)
class BatchCaller(Caller):
    collector: Collector | None = None
    prices: PriceBook = field(default_factory=PriceBook)
    apis: dict[str, BatchAPI] = field(default_factory=dict)  # provider → its Batch API
    clients: dict[str, BatchClient] = field(default_factory=dict)

    @classmethod
    def over(cls, caller: Caller, collector: Collector, prices: PriceBook) -> BatchCaller:
        return cls(
            registry=caller.registry,
            retry=caller.retry,
            timeout_s=caller.timeout_s,
            defaults=caller.defaults,
            cache=caller.cache,
            collector=collector,
            prices=prices,
        )

    def client(self, provider: str) -> BatchClient:
        if provider not in self.clients:
            self.clients[provider] = self.registry.batch_client(provider)
        return self.clients[provider]

    async def complete(self, call: Call, record: CallRecord | None = None) -> Completion:
        chain, built = await self.build(call)
        api = self.apis.get(chain.name)
        item = CURRENT.get(None)
        if api is None or self.collector is None or item is None:
            with self._realtime(item):
                return await Caller.complete(self, call, record)
        request = built.request
        window = call.agent.context_window or (await self.profile(call.agent)).context_window
        waiter = self._waiter(call, request, chain.name, item, api, record, window)
        # Its span waits with it; the job that answered is in its notes (moa.telemetry).
        with telemetry.chat(chain.name, request, record, streamed=False) as seen:
            row = await self.collector.ask(waiter)
            # A failed row raises here.
            answer = self.client(chain.name).completion(request, row) if row.ran else None
            if answer is not None:
                seen.answered(answer)
        if answer is None:  # its job ended before it ran, and real-time was asked for
            self.collector.note(item, record, f"sent real-time: its batch job ended {row.code}")
            with self._realtime(item):
                return await Caller.complete(self, call, record)
        if record is not None:
            record.references_cut = built.cuts
            record.notes.extend(built.notes)
        completion = answer
        usage = completion.usage
        cost = usage.cost_usd
        if cost is None:
            full = self.prices.cost(call.agent.model, usage)
            cost = None if full is None else full * (1 - api.discount)
        completion = replace(completion, usage=replace(usage, cost_usd=cost))
        self.collector.spend(waiter.layer, cost)
        if not (completion.text.strip() or completion.tool_calls):
            raise ProviderError.empty(chain.name, request.model)
        return completion

    async def stream(
        self, call: Call, record: CallRecord | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        provider = (await self.route(call.agent)).provider
        if provider.name not in self.apis or CURRENT.get(None) is None:
            with self._realtime(CURRENT.get(None)):
                async for chunk in Caller.stream(self, call, record):
                    yield chunk
            return
        c = await self.complete(call, record)
        yield StreamChunk(
            c.text,
            c.usage,
            c.finish_reason,
            attempts=1,
            tool_calls=as_deltas(c.tool_calls),
            logprobs=c.logprobs,
        )

    def _waiter(
        self,
        call: Call,
        request: ChatRequest,
        provider: str,
        item: str,
        api: BatchAPI,
        record: CallRecord | None,
        window: int,
    ) -> Waiter:
        assert self.collector is not None
        line_body = BatchClient.line("", request)
        cid = self.collector.custom_id(item, provider, line_body.decode())
        prompt = messages_tokens(request.messages)
        ceiling = request.sampling.max_tokens or max(window - prompt, 1)
        full = self.prices.cost(call.agent.model, Usage(prompt, ceiling))
        layer = "?" if record is None else f"layer {record.layer}"
        if record is not None and record.role != "proposer":
            layer += f" ({record.role})"
        return Waiter(
            cid,
            item,
            provider,
            call.agent.model,
            request,
            BatchClient.line(cid, request),
            layer,
            None if full is None else full * (1 - api.discount),
            future=asyncio.get_running_loop().create_future(),
            record=record,
        )

    def _realtime(self, item: str | None) -> AbstractContextManager[None]:
        if self.collector is None:
            return nullcontext()
        return self.collector.realtime(item)
