"""OpenTelemetry for moa: GenAI spans and metrics, in one home.

moa depends on `opentelemetry-api` only, which does nothing until a tracer provider is set: by
the application (the Python API then nests each run under the caller's current span), or by
the command line, whose `otel` extra brings the SDK and the OTLP exporter
(`moa.telemetry.setup`). Which conventions are followed and what each span says:
`moa.telemetry.conventions`; the span tree: `moa.telemetry.spans` (a call's span:
`moa.telemetry.calls`; batches: `moa.telemetry.batches`); the histograms:
`moa.telemetry.metrics`.
"""

from moa.telemetry.batches import batch_item, batch_job
from moa.telemetry.calls import OFF, Chat, chat
from moa.telemetry.core import tracer
from moa.telemetry.spans import continued, retried, stage, waited, workflow

__all__ = [
    "OFF",
    "Chat",
    "batch_item",
    "batch_job",
    "chat",
    "continued",
    "retried",
    "stage",
    "tracer",
    "waited",
    "workflow",
]
