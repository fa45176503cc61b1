"""Prometheus metrics, one registry per app (so several apps in one process do not collide).

With several worker processes (`moa serve --workers N`, which manages the directory) every
worker writes its counts to files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode) and a scrape of any worker reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from moa.trace import Result

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "moa_requests",
            "Chat completion requests, by recipe, streaming and HTTP status.",
            ["model", "stream", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "moa_request_duration_seconds",
            "Time from request to the last byte of the answer (runs that produced one).",
            ["model", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_calls = Counter(
            "moa_upstream_calls",
            "Upstream model calls made by runs, by role and outcome.",
            ["upstream_model", "role", "status"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "moa_upstream_call_duration_seconds",
            "Duration of upstream model calls (retries included).",
            ["role"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "moa_errors",
            "Requests answered with an error, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "moa_tokens",
            "Tokens used by upstream calls, summed over every call of every run.",
            ["model", "direction"],
            registry=self.registry,
        )
        self.cost = Counter(
            "moa_cost_usd",
            "USD spent by upstream calls whose cost is known (reported or priced), by recipe.",
            ["model"],
            registry=self.registry,
        )
        self._outcomes()
        self.runs_in_progress = Gauge(
            "moa_runs_in_progress",
            "MoA runs currently in flight.",
            registry=self.registry,
            multiprocess_mode="livesum",  # the sum over the workers that are alive
        )

    def _outcomes(self) -> None:
        """What a run's answer stands on: members lost, costs unknown."""
        self.degraded = Counter(
            "moa_degraded_runs",
            "Runs that lost a member they asked for (failed, timed out, cut), by recipe.",
            ["model"],
            registry=self.registry,
        )
        self.unpriced_calls = Counter(
            "moa_unpriced_calls",
            "Upstream calls whose cost is unknown (no reported cost, no known price).",
            ["upstream_model"],
            registry=self.registry,
        )

    def request(self, model: str, stream: bool, status: int, seconds: float | None) -> None:
        flag = "true" if stream else "false"
        self.requests.labels(model, flag, str(status)).inc()
        if seconds is not None:
            self.latency.labels(model, flag).observe(seconds)

    def error(self, code: str | None) -> None:
        self.errors.labels(code or "unknown").inc()

    def run(self, model: str, result: Result) -> None:
        """Everything upstream that one run did (also for failed runs: their calls happened)."""
        for call in result.calls:
            self.upstream_calls.labels(call.model, call.role, call.status).inc()
            self.upstream_latency.labels(call.role).observe(call.latency_s)
        usage = result.usage
        self.tokens.labels(model, "input").inc(usage.input_tokens)
        self.tokens.labels(model, "output").inc(usage.output_tokens)
        self.cost.labels(model).inc(result.known_cost_usd)
        if result.degraded:
            self.degraded.labels(model).inc()
        for call in result.unpriced:
            self.unpriced_calls.labels(call.model).inc()

    def render(self) -> bytes:
        if not multiprocess_mode():
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        multiprocess.MultiProcessCollector(everyone)  # type: ignore[no-untyped-call]
        return generate_latest(everyone)

    def close(self) -> None:
        """A worker that stops takes its live gauges out of the sum."""
        if multiprocess_mode():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def multiprocess_mode() -> bool:
    """Whether prometheus-client chose file-backed values (PROMETHEUS_MULTIPROC_DIR was set
    when it was first imported)."""
    return values.ValueClass is not values.MutexValue
