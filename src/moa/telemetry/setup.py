"""Tracing for a command-line process (every `moa` verb, `moa serve`'s workers): the SDK and
its exporters, configured by OpenTelemetry's own environment variables.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) or
OTEL_TRACES_EXPORTER is set, and OTEL_SDK_DISABLED is not `true`; `--otel` / `--no-otel`
decide instead (and are passed to child processes as MOA_OTEL). Exporters: `otlp` (OTLP over
HTTP, protobuf; the default), `console` (on stderr: stdout is the answer's), `none`. The rest
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, headers, timeouts, batching, the metrics' export
interval) is the SDK's to read.

Tracing never fails a run: a missing extra, an endpoint that does not answer (checked before
the first span, and on every export), an exporter moa does not ship — each is said once on
stderr, and the run goes on untraced.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from moa.telemetry.exporters import Reported

CHOICE = "MOA_OTEL"  # "1" / "0": --otel / --no-otel, for the processes a command starts
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_DEFAULT_ENDPOINT = "http://localhost:4318"
_CONNECT_S = 1.0


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment turns tracing on (see the module's doc)."""
    if (choice := env.get(CHOICE)) in ("0", "1"):
        return choice == "1"
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return _names(exporters) != ["none"]
    return any(env.get(name, "").strip() for name in _ENDPOINTS)


@dataclass
class Tracing:
    """The providers one process set up; `shutdown()` sends what is still buffered."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider | None
    reported: Reported | None = None

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            gone = self.reported is not None and self.reported.gone
            # A collector that went away would hold the last export until its timeout.
            self.meter_provider.shutdown(timeout_millis=0 if gone else 10_000)


def start(
    choice: bool | None = None, env: Mapping[str, str] | None = None, err: IO[str] | None = None
) -> Tracing | None:
    """Set up tracing for this process if the environment (or `choice`) asks for it; None
    when it does not, or cannot (said once on `err`)."""
    env = os.environ if env is None else env
    err = sys.stderr if err is None else err
    if not (wanted(env) if choice is None else choice):
        return None
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from moa.telemetry.exporters import Reported
    except ImportError:
        _say(err, "tracing needs the otel extra (pip install 'moa[otel]'); running untraced")
        return None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # the application set up its own
    exporters = _names(env.get("OTEL_TRACES_EXPORTER", "otlp")) or ["otlp"]
    span_exporters, where = _span_exporters(exporters, env, err)
    if span_exporters is None:
        return None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "moa"}))
    tracer_provider = TracerProvider(resource=resource)
    reported = None
    for exporter, otlp in span_exporters:
        if otlp and where is not None:
            exporter = reported = Reported(exporter, where, lambda m: _say(err, m))
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    readers = _metric_readers(env, exporters)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers) if readers else None
    trace.set_tracer_provider(tracer_provider)
    if meter_provider is not None:
        metrics.set_meter_provider(meter_provider)
    # Export errors are said once (moa.telemetry.exporters.Reported), not logged every batch.
    logging.getLogger("opentelemetry.exporter").addHandler(logging.NullHandler())
    logging.getLogger("opentelemetry.exporter").propagate = False
    return Tracing(tracer_provider, meter_provider, reported)


def _names(value: str) -> list[str]:
    return [n.strip().lower() for n in value.split(",") if n.strip()]


def _span_exporters(
    names: Sequence[str], env: Mapping[str, str], err: IO[str]
) -> tuple[list[tuple[SpanExporter, bool]] | None, str | None]:
    """The exporters OTEL_TRACES_EXPORTER names (each with whether it is OTLP's), and the
    OTLP endpoint; None (said on `err`) when one cannot be made or the endpoint does not
    answer."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    exporters: list[tuple[SpanExporter, bool]] = []
    where = None
    for name in names:
        if name == "none":
            continue
        if name == "console":
            exporters.append((ConsoleSpanExporter(out=sys.stderr), False))
        elif name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol.strip() != "http/protobuf":
                _say(
                    err,
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: moa exports OTLP over HTTP only — "
                    f"set it to http/protobuf (the collector's port 4318); running untraced",
                )
                return None, None
            where = _endpoint(env)
            if (problem := _unreachable(where)) is not None:
                _say(
                    err, f"the OTLP endpoint {where} does not answer ({problem}); running untraced"
                )
                return None, None
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append((OTLPSpanExporter(), True))
        else:
            _say(err, f"OTEL_TRACES_EXPORTER={name}: moa knows otlp, console and none")
            return None, None
    return exporters, where


def _metric_readers(env: Mapping[str, str], traces: Sequence[str]) -> list[MetricReader]:
    """The GenAI histograms go where the spans go, unless OTEL_METRICS_EXPORTER says."""
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )

    names = _names(env.get("OTEL_METRICS_EXPORTER", ",".join(traces)))
    readers: list[MetricReader] = []
    for name in names:
        exporter: MetricExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter()
        elif name == "console":
            exporter = ConsoleMetricExporter(out=sys.stderr)
        else:
            continue
        readers.append(PeriodicExportingMetricReader(exporter))
    return readers


def _endpoint(env: Mapping[str, str]) -> str:
    """Where the spans go, as the exporter reads the environment."""
    if traces := env.get(_ENDPOINTS[0], "").strip():
        return traces
    base = env.get(_ENDPOINTS[1], "").strip() or _DEFAULT_ENDPOINT
    return base.rstrip("/") + "/v1/traces"


def _unreachable(url: str) -> str | None:
    """Why nothing listens at `url`'s host and port (None: something does)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "not a URL with a port"
    if not parts.hostname:
        return "not a URL"
    try:
        socket.create_connection((parts.hostname, port), timeout=_CONNECT_S).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _say(err: IO[str], message: str) -> None:
    err.write(f"moa: tracing: {message}\n")
    err.flush()
