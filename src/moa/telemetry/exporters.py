"""What the command line wraps around the SDK's OTLP exporter (imported with the SDK only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class Reported(SpanExporter):
    """An exporter that says once when its endpoint stops answering, then drops what follows:
    the run goes on untraced, and the end of the command does not wait on a dead collector."""

    def __init__(self, inner: SpanExporter, where: str, say: Callable[[str], None]) -> None:
        self.inner, self.where, self.say = inner, where, say
        self.gone = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.gone:
            return SpanExportResult.SUCCESS
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.gone = True
            self.say(f"the OTLP endpoint {self.where} stopped answering; the rest is untraced")
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)
