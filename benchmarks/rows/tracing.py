"""Row 16 — what tracing costs: CPU per upstream call with OpenTelemetry on, exporting every
span and both GenAI histograms over OTLP/HTTP to a local collector, against tracing off.

Row 3's run (one layer of 4 proposers and a streamed aggregator: 5 calls, 8 spans) against
`benchmarks.rawserver` in a child process, which also answers as the collector, so neither
the upstream's nor the collector's CPU is counted here. The SDK is set up as `moa --otel`
sets it up (a batch span processor, the OTLP/HTTP exporters); each traced batch ends with a
flush of spans and metrics, so their encoding and sending are inside its CPU time. Beside it,
the lever for a busy service: the SDK's sampler keeping 1 trace in 10 (metrics stay whole).
Off, on and sampled alternate batch by batch, so all see the same machine load. (The API lets a process set its
tracer provider once; the row swaps the global in and out, as OpenTelemetry's own test
utilities do.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from benchmarks.common import RowResult, build_moa, fake_registry, median, raw_upstream
from benchmarks.rows.overhead import CALLS_PER_RUN, PROPOSERS


class _Counted(OTLPSpanExporter):
    exported = 0
    encode = True  # time the SDK's protobuf encoding once more, apart (the warm-up only)
    encoding_s = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if _Counted.encode:
            c0 = time.process_time()
            encode_spans(spans).SerializePartialToString()
            _Counted.encoding_s += time.process_time() - c0
        result = super().export(spans)
        if result is SpanExportResult.SUCCESS:
            _Counted.exported += len(spans)
        return result


def _providers(collector: str, sampled: float = 1.0) -> tuple[TracerProvider, MeterProvider]:
    resource = Resource.create({"service.name": "moa-bench"})
    sampler = ParentBased(
        TraceIdRatioBased(sampled)
    )  # OTEL_TRACES_SAMPLER=parentbased_traceidratio
    tracer = TracerProvider(resource=resource, sampler=sampler)
    tracer.add_span_processor(BatchSpanProcessor(_Counted(endpoint=f"{collector}/v1/traces")))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{collector}/v1/metrics"), export_interval_millis=60_000
    )
    return tracer, MeterProvider(resource=resource, metric_readers=[reader])


def _tracing(on: tuple[TracerProvider, MeterProvider] | None) -> None:
    trace._TRACER_PROVIDER = None if on is None else on[0]  # type: ignore[attr-defined]
    metrics_internal._METER_PROVIDER = None if on is None else on[1]  # type: ignore[attr-defined]


async def _measure(
    base_url: str, collector: str, runs: int, batches: int
) -> dict[str, list[float]]:
    moa = build_moa(fake_registry(base_url), [PROPOSERS], "agg")
    every, tenth = _providers(collector), _providers(collector, sampled=0.1)
    prompt = "What is the capital of France?"

    async def batch() -> None:
        for _ in range(runs):
            await moa.arun(prompt)

    def flushing(providers: tuple[TracerProvider, MeterProvider]) -> Callable[[], None]:
        def flush() -> None:
            for provider in providers:
                provider.force_flush()

        return flush

    modes: dict[str, tuple[tuple[TracerProvider, MeterProvider] | None, Callable[[], None]]] = {
        "off": (None, lambda: None),
        "on": (every, flushing(every)),
        "sampled": (tenth, flushing(tenth)),
    }
    for setting, end in modes.values():  # warm-up: connections, imports, caches
        _tracing(setting)
        await batch()
        end()
    # How long the SDK takes to encode one of these spans, on the warm-up's (timed apart:
    # the timed batches encode once, in the exporter).
    encoding_per_span = _Counted.encoding_s / max(1, _Counted.exported)
    _Counted.encode = False
    cpu: dict[str, list[float]] = {name: [] for name in modes}
    exported = {name: 0 for name in modes}
    for _ in range(batches):  # alternate, so all see the same machine load
        for name, (setting, end) in modes.items():
            _tracing(setting)
            before = _Counted.exported
            c0 = time.process_time()
            await batch()
            end()
            cpu[name].append((time.process_time() - c0) / runs)
            exported[name] += _Counted.exported - before
    _tracing(None)
    await moa.aclose()
    for providers in (every, tenth):
        for provider in providers:
            provider.shutdown()
    per_run = {f"spans_per_run_{n}": [exported[n] / (runs * batches)] for n in modes}
    cpus = {"cpu_off": cpu["off"], "cpu_on": cpu["on"], "cpu_sampled": cpu["sampled"]}
    return {**cpus, **per_run, "encoding_per_span": [encoding_per_span]}


def run(quick: bool = False) -> RowResult:
    runs, batches = (20, 2) if quick else (100, 7)
    row = RowResult("16", "tracing overhead (CPU per call, OTLP to a local collector)")
    row.params = {
        "runs_per_batch": runs,
        "batches": batches,
        "run_shape": "1 layer x 4 proposers + streamed aggregator = 5 calls, 8 spans",
        "upstream and collector": "benchmarks.rawserver in a child process (CPU not counted)",
        "exporters": "BatchSpanProcessor + OTLP/HTTP spans and metrics, flushed every batch",
    }
    with raw_upstream() as up:
        collector = f"http://127.0.0.1:{up.port}"
        m = asyncio.run(_measure(up.base_url, collector, runs, batches))
    off, on, sampled = (median(m[f"cpu_{n}"]) / CALLS_PER_RUN for n in ("off", "on", "sampled"))
    row.raw = m
    row.add("CPU per call, tracing off", 1000 * off, "ms")
    row.add("CPU per call, tracing on, every span exported", 1000 * on, "ms")
    row.add("tracing on / off", on / off, "", "<= 1.05")
    row.add("added per call, tracing on", 1000 * (on - off), "ms")
    row.add("spans exported per run", m["spans_per_run_on"][0])
    row.add("the SDK's OTLP encoding, per span", 1e6 * m["encoding_per_span"][0], "us")
    row.add("CPU per call, 1 trace in 10 sampled", 1000 * sampled, "ms")
    row.add("1 in 10 sampled / off", sampled / off)
    return row
