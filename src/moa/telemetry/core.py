"""What every span of moa's needs: its tracer (None while nothing is traced), the run's and the
batch prompt's keys in the OpenTelemetry context, and an event stream stepped with a span
current — one step at a time, never across a `yield`, so the consumer's own spans stay its own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode

from moa.telemetry.conventions import SCHEMA_URL

T = TypeVar("T")

RUN = otel_context.create_key("moa.run")  # the run a call belongs to, beside the current span
ITEM = otel_context.create_key("moa.batch.item")  # the batch prompt a run answers
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


async def stepped(ctx: otel_context.Context, items: AsyncIterator[T]) -> AsyncGenerator[T, None]:
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


def failed(span: Span, error: BaseException) -> str:
    kind = str(getattr(error, "kind", None) or type(error).__name__)
    span.set_attribute("error.type", kind)
    span.set_status(StatusCode.ERROR, str(error)[:500])
    return kind
