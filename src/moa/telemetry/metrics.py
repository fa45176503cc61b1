"""The GenAI conventions' two client histograms, recorded once per upstream call:
`gen_ai.client.operation.duration` (seconds) and `gen_ai.client.token.usage` (tokens, by
`gen_ai.token.type`), with the bucket boundaries the conventions give. A cache hit uses no
billable tokens, so it counts in the duration only."""

from __future__ import annotations

from opentelemetry import metrics

from moa.telemetry.conventions import SCHEMA_URL, Attributes
from moa.types import Usage

_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48]
_DURATION_BUCKETS += [40.96, 81.92]
_TOKEN_BUCKETS = [4**k for k in range(14)]  # 1, 4, 16, … 67108864

_instruments: tuple[metrics.MeterProvider, metrics.Histogram, metrics.Histogram] | None = None


def _histograms() -> tuple[metrics.Histogram, metrics.Histogram]:
    global _instruments
    provider = metrics.get_meter_provider()
    if _instruments is None or _instruments[0] is not provider:
        meter = provider.get_meter("moa", schema_url=SCHEMA_URL)
        duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=[float(b) for b in _TOKEN_BUCKETS],
        )
        _instruments = (provider, duration, tokens)
    return _instruments[1], _instruments[2]


def call(attributes: Attributes, duration_s: float, usage: Usage | None) -> None:
    """One call's duration and, when it used any, its tokens."""
    duration, tokens = _histograms()
    duration.record(duration_s, attributes)
    if usage is not None:
        tokens.record(usage.input_tokens, {**attributes, "gen_ai.token.type": "input"})
        tokens.record(usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})
