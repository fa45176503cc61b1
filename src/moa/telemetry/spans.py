"""moa's spans, as a run goes:

    invoke_workflow RECIPE            one run (MoA.events): recipe, strategy, degraded, cost
    ├── layer 1                       a proposal layer
    │   ├── chat MODEL                one upstream call (moa.telemetry.calls): its retries and
    │   └── chat MODEL                rate-limit waits as events
    └── aggregate STRATEGY            the aggregator's stage: its calls (an analysis, a
        ├── (layer N, with staircase  staircase's steps, a fallback), and the layers it
        │    or invocation "auto")    runs itself
        └── chat MODEL

Each span is current only while its work runs (moa.telemetry.core.stepped), so the span current
when a run starts (a client's request, the caller's own span) is its parent. Nothing is done at
all while no tracer provider is set: the API alone is a no-op, and so is moa.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from moa.events import Done, Event
from moa.pricing import PriceBook
from moa.telemetry.calls import Ledger
from moa.telemetry.conventions import Attributes, Conventions, input_messages, run_attributes
from moa.telemetry.core import ITEM, RUN, failed, stepped, tracer
from moa.trace import Result
from moa.types import Message

T = TypeVar("T")


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
    if (item := otel_context.get_value(ITEM)) is not None:
        opened["moa.batch.item_id"] = str(item)
    span = spans.start_span(f"invoke_workflow {name}", attributes={**opened, **attributes})
    run = Ledger(prices, conventions)
    ctx = otel_context.set_value(RUN, run, trace.set_span_in_context(span))
    result: Result | None = None
    try:
        if conventions.content:
            span.set_attribute("gen_ai.input.messages", input_messages(inputs()))
        async with aclosing(stepped(ctx, events)) as steps:
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
            failed(span, error)
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
        async with aclosing(stepped(trace.set_span_in_context(span), events)) as steps:
            async for event in steps:
                yield event
    except GeneratorExit:
        raise
    except BaseException as error:
        if not isinstance(error, asyncio.CancelledError):
            failed(span, error)
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
