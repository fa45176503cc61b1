"""moa's spans, as a run goes:

    invoke_workflow RECIPE            one run (MoA.events): recipe, strategy, degraded, cost
    ├── layer 1                       a proposal layer
    │   ├── chat MODEL                one upstream call (moa.call.caller): its retries and
    │   └── chat MODEL                rate-limit waits as events
    └── aggregate STRATEGY            the aggregator's stage: its calls (an analysis, a
        ├── (layer N, with staircase  staircase's steps, a fallback), and the layers it
        │    or invocation "auto")    runs itself
        └── chat MODEL

Each span is current only while its work runs — one step of an event stream at a time, never
across a `yield` — so the caller's own spans stay the caller's, and the span current when a
run starts (a client's request, the caller's own span) is its parent.

A chat span starts and ends with its call, but takes its attributes when the run ends, from
the call's record, priced (moa.trace.CallRecord: the same data as the JSON trace). Nothing is
done at all while no tracer provider is set: the API alone is a no-op, and so is moa.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, aclosing, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from moa.events import Done, Event
from moa.pricing import PriceBook
from moa.telemetry import metrics
from moa.telemetry.conventions import (
    SCHEMA_URL,
    Attributes,
    Conventions,
    call_attributes,
    request_attributes,
    run_attributes,
)
from moa.trace import AggregatorStep, CallRecord, Result
from moa.types import ChatRequest, Completion, Message, StreamChunk, Usage

T = TypeVar("T")

_RUN = otel_context.create_key("moa.run")  # the run a call belongs to, beside the current span
_ITEM = otel_context.create_key("moa.batch.item")  # the batch prompt a run answers
_tracer: tuple[trace.TracerProvider, trace.Tracer] | None = None


def tracer() -> trace.Tracer | None:
    """moa's tracer, or None while no tracer provider is set (then moa traces nothing)."""
    global _tracer
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return None
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer("moa", schema_url=SCHEMA_URL))
    return _tracer[1]


async def _steps(ctx: otel_context.Context, items: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """`items`, each step taken with `ctx` current and none across a yield."""
    try:
        while True:
            token = otel_context.attach(ctx)
            try:
                item = await anext(items)
            except StopAsyncIteration:
                return
            finally:
                otel_context.detach(token)
            yield item
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            token = otel_context.attach(ctx)
            try:
                await close()
            finally:
                otel_context.detach(token)


def _failed(span: Span, error: BaseException) -> str:
    kind = str(getattr(error, "kind", None) or type(error).__name__)
    span.set_attribute("error.type", kind)
    span.set_status(StatusCode.ERROR, str(error)[:500])
    return kind


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
        async with aclosing(_steps(trace.set_span_in_context(self.span), chunks)) as steps:
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
            self.error_type = _failed(self.span, error)

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
class _Run:
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
    run = otel_context.get_value(_RUN)
    conventions = run.conventions if isinstance(run, _Run) else Conventions.from_env()
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
        if isinstance(run, _Run):
            run.calls.append(seen)
        else:
            seen.finish(conventions, None)


def workflow(
    events: AsyncGenerator[Event, None],
    *,
    name: str,
    attributes: Attributes,
    prices: PriceBook,
    inputs: Callable[[], list[Message]],
) -> AsyncGenerator[Event, None]:
    """A run's events under its workflow span (`events` itself while nothing is traced);
    `inputs`: the conversation, read only when content is captured."""
    spans = tracer()
    if spans is None:
        return events
    return _workflow(spans, events, name, attributes, prices, inputs)


async def _workflow(
    spans: trace.Tracer,
    events: AsyncGenerator[Event, None],
    name: str,
    attributes: Attributes,
    prices: PriceBook,
    inputs: Callable[[], list[Message]],
) -> AsyncGenerator[Event, None]:
    conventions = Conventions.from_env()
    opened = {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": name}
    if (item := otel_context.get_value(_ITEM)) is not None:
        opened["moa.batch.item_id"] = str(item)
    span = spans.start_span(f"invoke_workflow {name}", attributes={**opened, **attributes})
    run = _Run(prices, conventions)
    ctx = otel_context.set_value(_RUN, run, trace.set_span_in_context(span))
    result: Result | None = None
    try:
        if conventions.content:
            from moa.telemetry.conventions import input_messages

            span.set_attribute("gen_ai.input.messages", input_messages(inputs()))
        async with aclosing(_steps(ctx, events)) as steps:
            async for event in steps:
                if isinstance(event, Done):
                    result = event.result
                yield event
    except GeneratorExit:  # closed before its end: a client that left (after Done: read whole)
        if result is None:
            span.set_attribute("moa.cancelled", True)
        raise
    except BaseException as error:
        result = getattr(error, "result", None)
        if isinstance(error, asyncio.CancelledError):
            span.set_attribute("moa.cancelled", True)
        else:
            _failed(span, error)
        raise
    finally:
        run.close()
        if isinstance(result, Result) and span.is_recording():
            span.set_attributes(run_attributes(result, conventions))
        span.end()


def stage(
    name: str,
    attributes: Attributes,
    events: AsyncGenerator[T, None],
    ended: Callable[[], Attributes] | None = None,
) -> AsyncGenerator[T, None]:
    """`events` under a span of the run's (a layer, the aggregator's stage); `ended`: what the
    span says once they have all happened."""
    spans = tracer()
    if spans is None:
        return events
    return _stage(spans, name, attributes, events, ended)


async def _stage(
    spans: trace.Tracer,
    name: str,
    attributes: Attributes,
    events: AsyncGenerator[T, None],
    ended: Callable[[], Attributes] | None,
) -> AsyncGenerator[T, None]:
    span = spans.start_span(name, attributes=attributes)
    try:
        async with aclosing(_steps(trace.set_span_in_context(span), events)) as steps:
            async for event in steps:
                yield event
    except GeneratorExit:
        raise
    except BaseException as error:
        if not isinstance(error, asyncio.CancelledError):
            _failed(span, error)
        raise
    finally:
        if ended is not None:
            span.set_attributes(ended())
        span.end()


def retried(attempt: int, kind: str, status: int | None, wait_s: float) -> None:
    """A retry, as an event on the current call's span."""
    span = trace.get_current_span()
    if span.is_recording():
        attributes: Attributes = {"moa.attempt": attempt, "error.type": kind, "moa.wait_s": wait_s}
        if status is not None:
            attributes["http.response.status_code"] = status
        span.add_event("moa.retry", attributes)


def waited(seconds: float, why: str) -> None:
    """A wait for a rate limit's turn (`why`: pace, retry_after, concurrency), as an event on
    the current call's span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("moa.rate_limit.wait", {"moa.wait_s": seconds, "moa.reason": why})


@contextmanager
def batch_item(item_id: object) -> Iterator[None]:
    """One prompt of a batch: the run inside is a trace of its own, whatever is current, and
    its workflow span names the prompt's id (as the input file writes it)."""
    if tracer() is None:
        yield
        return
    alone = otel_context.set_value(_ITEM, json.dumps(item_id), otel_context.Context())
    token = otel_context.attach(alone)
    try:
        yield
    finally:
        otel_context.detach(token)


def batch_job(job: Mapping[str, Any], started_ns: int) -> None:
    """A Batch API job (moa.evaluation.batch_api), from its submission (or the round that
    found it again) to the reading of its rows, as a span of its own: its id, provider,
    model, status and counts, as the run's state file records them."""
    spans = tracer()
    if spans is None:
        return
    provider, _, model = str(job.get("model", "")).partition(":")
    counts = job.get("counts") or {}
    attributes: Attributes = {
        "gen_ai.operation.name": "chat",
        **Conventions.from_env().provider(str(job.get("provider") or provider)),
        "gen_ai.request.model": model or provider,
        "moa.batch_api.job_id": job.get("id") or "",
        "moa.batch_api.status": job.get("status") or "",
        "moa.batch_api.requests": len(job.get("requests") or ()),
        "moa.batch_api.completed": int(counts.get("completed", 0)),
        "moa.batch_api.failed": int(counts.get("failed", 0)),
        "moa.layer.name": job.get("layer") or "",
    }
    span = spans.start_span(
        f"batch_api job {job.get('id')}", attributes=attributes, start_time=started_ns
    )
    if job.get("status") == "failed":
        span.set_status(StatusCode.ERROR, "the job's file did not validate")
    span.end()


@contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """A client's W3C trace context (`traceparent`) current for what runs inside: a request's
    run is then a child of the client's span — unless a span is current already (the server's
    own request span, from FastAPI's telemetry or an ASGI instrumentation, which continued
    the client's trace itself): the run is then that span's child."""
    if tracer() is None or "traceparent" not in headers:
        yield
        return
    if trace.get_current_span().get_span_context().is_valid:
        yield
        return
    token = otel_context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)
