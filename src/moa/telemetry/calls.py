"""The span of one upstream call (moa.call.caller): `chat()` opens it around the call; it is
current while the call is awaited (`current()`, `within()` for a stream's chunks), so retries
and rate-limit waits land on it as events. It ends with the call, but takes its attributes when
its run ends (`Ledger.close`), from the call's record, priced: the same data as the JSON trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, aclosing, contextmanager, nullcontext
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from moa.pricing import PriceBook
from moa.telemetry import metrics
from moa.telemetry.conventions import Attributes, Conventions, call_attributes, request_attributes
from moa.telemetry.core import RUN, failed, stepped, tracer
from moa.trace import AggregatorStep, CallRecord
from moa.types import ChatRequest, Completion, StreamChunk, Usage


@dataclass(eq=False)
class Chat:
    """One upstream call's span, from its start to its record's last word."""

    span: Span
    provider: str
    request: ChatRequest
    record: CallRecord | None
    step: AggregatorStep | None  # the staircase step this call is
    address: tuple[str, int] | None
    started: float = field(default_factory=time.perf_counter)
    ended_ns: int | None = None
    duration_s: float = 0.0
    error_type: str | None = None
    cancelled: bool = False
    # What the call itself saw, for a call outside a run (whose record is not filled in).
    response_model: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None

    def current(self) -> AbstractContextManager[object]:
        """This span current for one awaited call (never across a yield)."""
        return trace.use_span(
            self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    async def within(self, chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
        """A stream read with this span current while each chunk is awaited."""
        async with aclosing(stepped(trace.set_span_in_context(self.span), chunks)) as steps:
            async for chunk in steps:
                self.response_model = chunk.model or self.response_model
                self.usage = chunk.usage or self.usage
                self.finish_reason = chunk.finish_reason or self.finish_reason
                yield chunk

    def answered(self, completion: Completion) -> None:
        self.response_model = completion.model
        self.usage, self.finish_reason = completion.usage, completion.finish_reason

    def ended(self, error: BaseException | None, cancelled: bool) -> None:
        self.ended_ns = time.time_ns()
        self.duration_s = time.perf_counter() - self.started
        self.cancelled = cancelled
        if error is not None:
            self.error_type = failed(self.span, error)

    def finish(self, conventions: Conventions, prices: PriceBook | None) -> None:
        """The span's attributes from the call's record (priced, when the run priced it), then
        its end, at the time the call ended; the call's metrics."""
        usage, cost, record = self.usage, None, self.record
        if record is not None:
            usage, cost = record.usage, record.cost_usd
            if self.step is not None:  # its own tokens; the record sums every step's
                usage = Usage(self.step.input_tokens, self.step.tokens_added, estimated=True)
                cost = None if prices is None else prices.cost(record.model, usage)
        if self.span.is_recording():  # (not for a trace the sampler left out)
            self.span.set_attributes(self._said(conventions, usage, cost))
        self.span.end(end_time=self.ended_ns)
        cached = record is not None and record.ok and record.attempts == 0
        metrics.call(
            self._metric_attributes(conventions), self.duration_s, None if cached else usage
        )

    def _said(
        self, conventions: Conventions, usage: Usage | None, cost: float | None
    ) -> Attributes:
        if self.record is not None:
            attributes = call_attributes(
                self.record, self.step, usage or Usage(), cost, conventions
            )
        else:  # a call outside a run: what it saw itself
            attributes = {}
            if self.finish_reason is not None:
                attributes["gen_ai.response.finish_reasons"] = [self.finish_reason]
            if usage is not None:
                attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
                attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        if self.response_model is not None:
            attributes["gen_ai.response.model"] = self.response_model
        if self.cancelled:
            attributes["moa.cancelled"] = True
        return attributes

    def _metric_attributes(self, conventions: Conventions) -> Attributes:
        attributes: Attributes = {
            "gen_ai.operation.name": "chat",
            **conventions.provider(self.provider),
            "gen_ai.request.model": self.request.model,
        }
        if self.response_model is not None:
            attributes["gen_ai.response.model"] = self.response_model
        if self.address is not None:
            attributes["server.address"], attributes["server.port"] = self.address
        if self.error_type is not None:
            attributes["error.type"] = self.error_type
        return attributes


class _Off:
    """What a call gets while nothing is traced: every method a no-op."""

    def current(self) -> AbstractContextManager[object]:
        return nullcontext()

    def within(self, chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
        return chunks

    def answered(self, completion: Completion) -> None:
        pass


OFF = _Off()


@dataclass(eq=False)
class Ledger:
    """A run's chat spans, held until its records are final and priced."""

    prices: PriceBook
    conventions: Conventions
    calls: list[Chat] = field(default_factory=list)

    def close(self) -> None:
        for call in self.calls:
            call.finish(self.conventions, self.prices)
        self.calls.clear()


@contextmanager
def chat(
    provider: str,
    request: ChatRequest,
    record: CallRecord | None,
    *,
    streamed: bool,
    address: tuple[str, int] | None = None,
) -> Iterator[Chat | _Off]:
    """The span of one upstream call of `request` to `provider` (`record`: the call's record in
    the run's trace). It is current only inside `current()` or `within()`."""
    spans = tracer()
    if spans is None:
        yield OFF
        return
    run = otel_context.get_value(RUN)
    conventions = run.conventions if isinstance(run, Ledger) else Conventions.from_env()
    attributes = request_attributes(
        provider, request, conventions, streamed=streamed, address=address
    )
    span = spans.start_span(f"chat {request.model}", kind=SpanKind.CLIENT, attributes=attributes)
    # A staircase appends each step to the record just before its call (moa.engine.staircase).
    step = record.steps[-1] if record is not None and record.steps else None
    seen = Chat(span, provider, request, record, step, address)
    error: BaseException | None = None
    cancelled = False
    try:
        yield seen
    except GeneratorExit:  # the stream was closed before its end (a staircase step replaced)
        cancelled = True
        raise
    except BaseException as exc:
        # A straggler cancelled by its layer is cut, not failed.
        cancelled = isinstance(exc, asyncio.CancelledError)
        error = None if cancelled else exc
        raise
    finally:
        seen.ended(error, cancelled)
        if isinstance(run, Ledger):
            run.calls.append(seen)
        else:
            seen.finish(conventions, None)
