"""OpenTelemetry GenAI spans and metrics (moa.telemetry): the span tree of a run and what each
span says, on the fake upstream, read from the SDK's in-memory exporter; the command line's
OTLP export over real HTTP to a receiver on loopback; a client's `traceparent` continued by the
server; content only when switched on, API keys never."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import wait_until
from moa import Aggregator, MoA, ProposalLayer, ProviderConfig, Registry, RetryPolicy
from moa.call.agent import Agent
from moa.engine.invocation import PANEL
from moa.errors import DegradedRunError
from moa.events import Done, ProposalFinished
from moa.policies.cache import ResponseCache
from moa.policies.ratelimit import RateLimit
from moa.providers.base import Capabilities
from moa.testing import FakeUpstream, Reply, continuing
from moa.types import Sampling


class Spans:
    """What the in-memory exporter holds, as a tree."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    @property
    def all(self) -> list[ReadableSpan]:
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.all if s.name.startswith(prefix)]

    def one(self, name: str) -> ReadableSpan:
        found = [s for s in self.all if s.name == name]
        assert len(found) == 1, [s.name for s in self.all]
        return found[0]

    @property
    def workflow(self) -> ReadableSpan:
        (found,) = self.named("invoke_workflow")
        return found

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        assert span.context is not None
        return [s for s in self.all if s.parent and s.parent.span_id == span.context.span_id]

    def names_under(self, span: ReadableSpan) -> list[str]:
        return [s.name for s in self.children(span)]

    def attribute_text(self) -> str:
        """Every attribute value of every span and event, as one text to search."""
        values = [str(v) for s in self.all for v in (s.attributes or {}).values()]
        values += [
            str(v) for s in self.all for e in s.events for v in (e.attributes or {}).values()
        ]
        return "\n".join(values)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spans]:
    """An SDK tracer provider (and meter provider) made global for one test, as an application
    sets one up; put back afterwards, so other tests run untraced. (The API lets a provider be
    set only once per process; OpenTelemetry's own test utilities reset it the same way.)"""
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield Spans(exporter)
    provider.shutdown()


@pytest.fixture
def metric_reader(spans: Spans, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    from opentelemetry.metrics import _internal

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(_internal, "_METER_PROVIDER", provider)
    yield reader
    provider.shutdown()


def two_layers(registry: Registry, **options: object) -> MoA:
    return MoA(
        ProposalLayer("fake:a", "fake:b"),
        ProposalLayer("fake:c"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
        name="panel",
        **options,  # type: ignore[arg-type]
    )


# -- the span tree ---------------------------------------------------------------------------


async def test_a_run_is_a_workflow_of_layers_and_their_calls(
    spans: Spans, registry: Registry, upstream: FakeUpstream
) -> None:
    upstream.script("agg", Reply("Paris.", answered_by="agg-2024-08-06"))
    mixture = two_layers(registry)
    async with mixture:
        result = await mixture.arun(
            "Capital of France?", sampling=Sampling(temperature=0.2, max_tokens=50)
        )
    workflow = spans.workflow
    assert workflow.name == "invoke_workflow panel"
    assert workflow.parent is None
    assert workflow.attributes is not None
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["gen_ai.workflow.name"] == "panel"
    assert workflow.attributes["moa.strategy"] == "synthesize"
    assert workflow.attributes["moa.degraded"] is False
    assert workflow.attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    assert spans.names_under(workflow) == ["layer 1", "layer 2", "aggregate synthesize"]
    layer1, layer2, aggregate = spans.children(workflow)
    assert spans.names_under(layer1) == ["chat a", "chat b"]
    assert spans.names_under(layer2) == ["chat c"]
    assert spans.names_under(aggregate) == ["chat agg"]
    (agg,) = spans.children(aggregate)
    assert agg.kind is SpanKind.CLIENT
    said = dict(agg.attributes or {})
    assert said["gen_ai.operation.name"] == "chat"
    assert said["gen_ai.provider.name"] == "fake"
    assert said["gen_ai.request.model"] == "agg"  # as the provider names it: no "fake:"
    assert said["gen_ai.response.model"] == "agg-2024-08-06"  # what the answer said
    assert said["gen_ai.request.temperature"] == 0.2
    assert said["gen_ai.request.max_tokens"] == 50
    assert said["gen_ai.usage.input_tokens"] == result.calls[-1].usage.input_tokens > 0
    assert said["gen_ai.usage.output_tokens"] == 1
    assert said["gen_ai.response.finish_reasons"] == ("stop",)
    assert said["server.address"] == "127.0.0.1"
    assert (said["moa.role"], said["moa.layer"], said["moa.index"]) == ("aggregator", 3, 0)
    assert "moa.cache_hit" not in said and "moa.attempts" not in said  # one attempt, no hit
    chat_c = spans.one("chat c")
    assert (chat_c.attributes or {})["moa.role"] == "proposer"
    assert (chat_c.attributes or {})["moa.layer"] == 2


async def test_each_call_says_its_cost(
    spans: Spans, registry: Registry, upstream: FakeUpstream
) -> None:
    upstream.script("a", Reply("x", cost=0.25))
    upstream.script("agg", Reply("y", cost=0.5))
    mixture = MoA(ProposalLayer("fake:a"), Aggregator("fake:agg"), registry=registry)
    async with mixture:
        await mixture.arun("q")
    assert (spans.one("chat a").attributes or {})["moa.cost_usd"] == 0.25
    assert (spans.one("chat agg").attributes or {})["moa.cost_usd"] == 0.5
    assert (spans.workflow.attributes or {})["moa.cost_usd"] == 0.75


async def test_the_python_api_nests_under_the_callers_span_and_leaves_it_current(
    spans: Spans, registry: Registry
) -> None:
    app = trace.get_tracer("app")
    mixture = two_layers(registry)
    async with mixture:
        with app.start_as_current_span("handle request") as mine:
            async for event in mixture.stream("q"):
                if isinstance(event, ProposalFinished):
                    # Between two events the caller's span is current, not one of moa's.
                    assert trace.get_current_span() is mine
                    with app.start_as_current_span("my own work"):
                        pass
    request = spans.one("handle request")
    assert spans.workflow.parent.span_id == request.context.span_id  # type: ignore[union-attr]
    assert {s.parent.span_id for s in spans.named("my own work")} == {request.context.span_id}  # type: ignore[union-attr]


async def test_a_streamed_run_streams_every_call_and_a_whole_one_asks_every_call_whole(
    spans: Spans, registry: Registry
) -> None:
    mixture = two_layers(registry)
    async with mixture:
        async for _ in mixture.stream("q"):
            pass
        streamed = {
            s.name: (s.attributes or {}).get("gen_ai.request.stream") for s in spans.named("chat")
        }
        spans.exporter.clear()
        await mixture.arun("q")
        whole = {
            s.name: (s.attributes or {}).get("gen_ai.request.stream") for s in spans.named("chat")
        }
    assert streamed == {"chat a": True, "chat b": True, "chat c": True, "chat agg": True}
    # A whole answer asks the aggregator whole too (nobody reads it as it comes).
    assert whole == {"chat a": None, "chat b": None, "chat c": None, "chat agg": None}


# -- what went wrong, and how it was got around ----------------------------------------------


async def test_a_failed_member_says_why_and_its_run_says_it_is_degraded(
    spans: Spans, registry: Registry, upstream: FakeUpstream
) -> None:
    upstream.script("b", Reply(status=401))
    mixture = two_layers(registry)
    async with mixture:
        result = await mixture.arun("q")
    assert result.degraded
    failed = spans.one("chat b")
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "auth"
    assert (failed.attributes or {})["moa.missing"] == "failed"
    assert spans.one("chat a").status.status_code is StatusCode.UNSET
    workflow = dict(spans.workflow.attributes or {})
    assert workflow["moa.degraded"] is True
    assert (workflow["moa.answered"], workflow["moa.asked"]) == (2, 3)
    assert workflow["moa.lost"] == ("fake:b (failed)",)
    layer1 = dict(spans.one("layer 1").attributes or {})
    assert (layer1["moa.layer.calls"], layer1["moa.layer.answered"]) == (2, 1)


async def test_a_degraded_run_refused_is_a_failed_workflow(
    spans: Spans, registry: Registry, upstream: FakeUpstream
) -> None:
    upstream.script("b", Reply(status=500))
    mixture = two_layers(registry, on_degraded="fail")
    async with mixture:
        with pytest.raises(DegradedRunError):
            await mixture.arun("q")
    workflow = spans.workflow
    assert workflow.status.status_code is StatusCode.ERROR
    assert (workflow.attributes or {})["error.type"] == "DegradedRunError"
    assert (workflow.attributes or {})["moa.degraded"] is True
    assert spans.named("aggregate") == []  # refused after layer 1


async def test_a_retry_is_an_event_on_its_call(
    spans: Spans, registry: Registry, upstream: FakeUpstream
) -> None:
    upstream.script("a", Reply(status=503), Reply("second try"))
    mixture = MoA(
        ProposalLayer("fake:a"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.001),
    )
    async with mixture:
        await mixture.arun("q")
    call = spans.one("chat a")
    (retry,) = call.events
    assert retry.name == "moa.retry"
    assert retry.attributes is not None
    assert retry.attributes["moa.attempt"] == 1
    assert retry.attributes["error.type"] == "upstream_error"
    assert retry.attributes["http.response.status_code"] == 503
    assert (call.attributes or {})["moa.attempts"] == 2
    assert call.status.status_code is StatusCode.UNSET
    assert spans.one("chat agg").events == ()


async def test_a_wait_for_a_rate_limit_is_an_event_on_the_call_that_waited(
    spans: Spans, registry: Registry, upstream: FakeUpstream
) -> None:
    registry.limits.configure("fake", RateLimit(max_concurrency=1))
    upstream.script("a", Reply("slow", delay_s=0.05))
    upstream.script("b", Reply("slow", delay_s=0.05))
    mixture = MoA(ProposalLayer("fake:a", "fake:b"), Aggregator("fake:agg"), registry=registry)
    async with mixture:
        await mixture.arun("q")
    waits = [
        (s.name, e.attributes)
        for s in spans.named("chat")
        for e in s.events
        if e.name == "moa.rate_limit.wait"
    ]
    assert len(waits) == 1  # the second proposer waited for the first's slot
    name, said = waits[0]
    assert name in ("chat a", "chat b")
    assert said is not None and said["moa.reason"] == "concurrency"
    assert float(said["moa.wait_s"]) > 0  # type: ignore[arg-type]


async def test_a_cache_hit_is_marked_and_counts_no_tokens(
    spans: Spans, metric_reader: InMemoryMetricReader, registry: Registry, tmp_path: Path
) -> None:
    mixture = MoA(
        ProposalLayer(Agent("fake:a", Sampling(temperature=0.0))),
        Aggregator(Agent("fake:agg", Sampling(temperature=0.0))),
        registry=registry,
        cache=ResponseCache(tmp_path / "cache.sqlite"),
    )
    async with mixture:
        await mixture.arun("q")
        first = {s.name: (s.attributes or {}).get("moa.cache_hit") for s in spans.named("chat")}
        spans.exporter.clear()
        await mixture.arun("q")
        second = {s.name: dict(s.attributes or {}) for s in spans.named("chat")}
    assert first == {"chat a": None, "chat agg": None}
    assert {n: a["moa.cache_hit"] for n, a in second.items()} == {"chat a": True, "chat agg": True}
    assert second["chat a"]["moa.attempts"] == 0
    points = histogram_points(metric_reader)
    assert points["gen_ai.client.operation.duration"] == 4  # every call
    assert points["gen_ai.client.token.usage"] == 4  # the first run's, input and output


def histogram_points(reader: InMemoryMetricReader) -> dict[str, int]:
    """How many values each histogram of moa's took."""
    data = reader.get_metrics_data()
    counts: dict[str, int] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                counts[metric.name] = sum(p.count for p in metric.data.data_points)  # type: ignore[union-attr]
    return counts


async def test_the_histograms_follow_the_conventions(
    spans: Spans, metric_reader: InMemoryMetricReader, registry: Registry
) -> None:
    mixture = MoA(ProposalLayer("fake:a"), Aggregator("fake:agg"), registry=registry)
    async with mixture:
        result = await mixture.arun("q")
    data = metric_reader.get_metrics_data()
    assert data is not None
    (metric_set,) = [
        m
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "gen_ai.client.token.usage"
    ]
    assert metric_set.unit == "{token}"
    by_type = {
        (dict(p.attributes)["gen_ai.request.model"], dict(p.attributes)["gen_ai.token.type"]): p.sum
        for p in metric_set.data.data_points  # type: ignore[union-attr]
    }
    assert by_type[("agg", "output")] == result.calls[-1].usage.output_tokens
    assert by_type[("a", "input")] == result.calls[0].usage.input_tokens
    point = metric_set.data.data_points[0]  # type: ignore[union-attr]
    assert dict(point.attributes)["gen_ai.operation.name"] == "chat"
    assert dict(point.attributes)["gen_ai.provider.name"] == "fake"
    assert list(point.explicit_bounds)[:3] == [1, 4, 16]  # type: ignore[union-attr]


# -- the aggregator's own calls ---------------------------------------------------------------

CONVENE = Reply("", tool_calls=[{"name": PANEL, "arguments": "{}"}])


def auto(upstream: FakeUpstream) -> MoA:
    tools = Capabilities(tools=True)
    registry = Registry(
        {"fake": ProviderConfig("fake", upstream.base_url, capabilities=tools)}, env={}
    )
    return MoA(
        ProposalLayer("fake:a", "fake:b"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
        invocation="auto",
    )


async def test_invocation_auto_answering_alone_convenes_no_layer(
    spans: Spans, upstream: FakeUpstream
) -> None:
    upstream.script("agg", Reply("Paris."))
    mixture = auto(upstream)
    async with mixture:
        await mixture.arun("q")
    workflow = spans.workflow
    assert (workflow.attributes or {})["moa.panel_convened"] is False
    (aggregate,) = spans.children(workflow)
    assert spans.names_under(aggregate) == ["chat agg"]
    assert spans.named("layer") == []


async def test_invocation_auto_convening_runs_the_layers_under_the_aggregator(
    spans: Spans, upstream: FakeUpstream
) -> None:
    upstream.script("agg", CONVENE, Reply("Paris, say both."))
    mixture = auto(upstream)
    async with mixture:
        await mixture.arun("q")
    workflow = spans.workflow
    assert (workflow.attributes or {})["moa.panel_convened"] is True
    (aggregate,) = spans.children(workflow)
    assert spans.names_under(aggregate) == ["chat agg", "layer 1", "chat agg"]
    assert spans.names_under(spans.one("layer 1")) == ["chat a", "chat b"]


async def test_each_staircase_step_is_a_call_of_its_own(
    spans: Spans, upstream: FakeUpstream
) -> None:
    proposals = {m: " ".join(f"{m}w{i}" for i in range(12)) for m in ("p0", "p1")}
    for model, text in proposals.items():
        upstream.script(model, Reply(text, token_delay_s=0.02))
    answer = " ".join(f"answer{i}" for i in range(30))
    upstream.script("agg", Reply(continuing(answer), token_delay_s=0.02))
    continues = Capabilities(continuation="assistant")
    registry = Registry({"fake": ProviderConfig("fake", upstream.base_url, capabilities=continues)})
    mixture = MoA(
        ProposalLayer("fake:p0", "fake:p1"),
        Aggregator("fake:agg", staircase=True, chunk_tokens=4),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )
    async with mixture:
        async for event in mixture.stream("q"):
            if isinstance(event, Done):
                record = event.result.calls[-1]
    aggregate = spans.one("aggregate synthesize")
    steps = [s for s in spans.children(aggregate) if s.name == "chat agg"]
    assert len(steps) == len(record.steps) >= 2
    assert "layer 1" in spans.names_under(aggregate)  # the staircase runs the last layer
    said = [dict(s.attributes or {}) for s in steps]
    assert [a["moa.staircase.prefix_chars"] for a in said] == [s.prefix_chars for s in record.steps]
    assert said[-1]["moa.staircase.final"] is True
    assert sum(a["gen_ai.usage.output_tokens"] for a in said) == record.usage.output_tokens
    assert all(a.get("moa.cancelled") for a in said[:-1])  # replaced by the next step
    assert not said[-1].get("moa.cancelled")


# -- content, keys and the conventions' switches ----------------------------------------------

SECRET = "the-password-is-swordfish"


async def test_content_is_absent_unless_switched_on(
    spans: Spans, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixture = two_layers(registry)
    async with mixture:
        await mixture.arun(f"q {SECRET}")
        assert SECRET not in spans.attribute_text()
        assert "answer from agg" not in spans.attribute_text()
        spans.exporter.clear()
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
        await mixture.arun(f"q {SECRET}")
    asked = json.loads(str((spans.one("chat a").attributes or {})["gen_ai.input.messages"]))
    assert asked[-1] == {"role": "user", "parts": [{"type": "text", "content": f"q {SECRET}"}]}
    answered = json.loads(str((spans.one("chat agg").attributes or {})["gen_ai.output.messages"]))
    assert answered == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "answer from agg"}],
            "finish_reason": "stop",
        }
    ]
    workflow = dict(spans.workflow.attributes or {})
    assert SECRET in str(workflow["gen_ai.input.messages"])
    assert "answer from agg" in str(workflow["gen_ai.output.messages"])


async def test_an_api_key_never_reaches_a_span(
    spans: Spans, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    key = "sk-live-0123456789abcdef"
    registry = Registry(
        {"fake": ProviderConfig("fake", upstream.base_url, "FAKE_API_KEY")},
        env={"FAKE_API_KEY": key},
    )
    upstream.script("b", Reply(status=401))
    mixture = two_layers(registry)
    async with mixture:
        await mixture.arun("q")
    assert spans.named("chat") and "gen_ai.input.messages" in spans.attribute_text() + str(
        [s.attributes for s in spans.all]
    )
    assert key not in spans.attribute_text()
    assert all(key not in (s.status.description or "") for s in spans.all)


async def test_the_latest_conventions_drop_the_old_provider_name(
    spans: Spans, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixture = MoA(ProposalLayer("fake:a"), Aggregator("fake:agg"), registry=registry)
    async with mixture:
        await mixture.arun("q")
        before = dict(spans.one("chat a").attributes or {})
        spans.exporter.clear()
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
        await mixture.arun("q")
        latest = dict(spans.one("chat a").attributes or {})
    assert before["gen_ai.system"] == before["gen_ai.provider.name"] == "fake"
    assert "gen_ai.system" not in latest and latest["gen_ai.provider.name"] == "fake"


async def test_nothing_is_traced_without_a_tracer_provider(registry: Registry) -> None:
    """The API alone: moa does no tracing work (a run's events come back unwrapped)."""
    from moa import telemetry
    from moa.engine.options import RunOptions
    from moa.pricing import PriceBook

    assert telemetry.tracer() is None
    events = two_layers(registry)._events("q", RunOptions.of())
    traced = telemetry.workflow(
        events, name="x", attributes={}, prices=PriceBook(), inputs=lambda: []
    )
    assert traced is events
    await events.aclose()


# -- over HTTP: the server, and the command line's OTLP export --------------------------------


TRACE_ID, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACEPARENT = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}


def ancestors(spans: Spans, span: ReadableSpan) -> list[str]:
    """The span ids above `span`, nearest first, up to the one outside this process."""
    by_id = {s.context.span_id: s for s in spans.all}  # type: ignore[union-attr]
    found = []
    while span.parent is not None:
        found.append(format(span.parent.span_id, "016x"))
        if span.parent.span_id not in by_id:
            break
        span = by_id[span.parent.span_id]
    return found


@pytest.mark.parametrize("stream", [False, True])
def test_the_server_continues_a_clients_traceparent(spans: Spans, moa_server, stream: bool) -> None:
    with httpx.Client(base_url=moa_server.url, timeout=30) as client:
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "test-moa", "stream": stream, "messages": [ASK]},
            headers=TRACEPARENT,
        )
        assert reply.status_code == 200
    # The client's trace holds the mixture, under its span (and the server's request span,
    # where FastAPI makes one: it ends once the response is sent, just after we read it).
    wait_until(lambda: spans.named("invoke_workflow"), what="the run's span")
    workflow = spans.workflow
    wait_until(lambda: ancestors(spans, workflow)[-1] == CLIENT_SPAN, what="the server's span")
    own = format(workflow.context.span_id, "016x")  # type: ignore[union-attr]
    calls = [s for s in spans.named("chat") if own in ancestors(spans, s)]
    assert len(calls) == 3
    assert {format(s.context.trace_id, "032x") for s in spans.all} == {TRACE_ID}  # type: ignore[union-attr]


ASK = {"role": "user", "content": "hi"}


async def test_the_trace_context_middleware_continues_a_traceparent_alone(
    spans: Spans, registry: Registry
) -> None:
    """Where no request span is made (a FastAPI without its own telemetry), moa's middleware
    continues the client's trace itself."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from moa.server.tracecontext import TraceContext

    mixture = MoA(ProposalLayer("fake:a"), Aggregator("fake:agg"), registry=registry)

    async def answer(request: Request) -> PlainTextResponse:
        return PlainTextResponse((await mixture.arun("q")).text)

    app = TraceContext(Starlette(routes=[Route("/", answer, methods=["POST"])]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://moa") as client:
        assert (await client.post("/", headers=TRACEPARENT)).text == "answer from agg"
        await client.post("/")  # no traceparent: a trace of its own
    await mixture.aclose()
    continued, alone = spans.named("invoke_workflow")
    assert continued.parent is not None and format(continued.parent.span_id, "016x") == CLIENT_SPAN
    assert format(continued.context.trace_id, "032x") == TRACE_ID  # type: ignore[union-attr]
    assert alone.parent is None


class Receiver:
    """A tiny OTLP/HTTP receiver on loopback: it keeps each request's path and body."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[tuple[str, dict[str, object]]]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        found = []
        for path, body in self.received:
            if path != "/v1/traces":
                continue
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        said = {a.key: _value(a.value) for a in span.attributes}
                        found.append((span.name, said))
        return found

    def metric_names(self) -> set[str]:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        names = set()
        for path, body in self.received:
            if path == "/v1/metrics":
                request = ExportMetricsServiceRequest.FromString(body)
                for resource in request.resource_metrics:
                    for scope in resource.scope_metrics:
                        names |= {m.name for m in scope.metrics}
        return names

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.close()


RECIPE = 'name = "traced"\n[retry]\nmax_attempts = 1\n[[layers]]\nmodels = ["fake:a", "fake:b"]\n[aggregator]\nmodel = "fake:agg"\n'


def moa(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MOA_OTEL"))}
    return subprocess.run(
        [sys.executable, "-m", "moa", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
    )


def test_the_command_line_exports_over_otlp_when_the_endpoint_is_set(
    receiver: Receiver, recipe_file
) -> None:
    done = moa(
        "ask",
        "-q",
        "-r",
        str(recipe_file(RECIPE)),
        "hello",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "my-app"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "answer from agg"
    assert "tracing" not in done.stderr
    names = sorted(name for name, _ in receiver.spans())
    assert names == sorted(
        [
            "invoke_workflow traced",
            "layer 1",
            "chat a",
            "chat b",
            "aggregate synthesize",
            "chat agg",
        ]
    )
    chat_a = dict(receiver.spans())["chat a"]
    assert chat_a["gen_ai.request.model"] == "a" and chat_a["gen_ai.provider.name"] == "fake"
    assert {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
    } <= receiver.metric_names()


def test_no_otel_wins_over_the_environment(receiver: Receiver, recipe_file) -> None:
    done = moa(
        "ask",
        "--no-otel",
        "-q",
        "-r",
        str(recipe_file(RECIPE)),
        "hello",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
    )
    assert done.returncode == 0, done.stderr
    assert receiver.received == []


def test_an_endpoint_that_does_not_answer_is_said_once_and_the_run_goes_on(recipe_file) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = moa(
        "ask",
        "-q",
        "--otel",
        "-r",
        str(recipe_file(RECIPE)),
        "hello",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "answer from agg"
    said = [line for line in done.stderr.splitlines() if "tracing" in line]
    assert said == [
        f"moa: tracing: the OTLP endpoint http://127.0.0.1:{port}/v1/traces does not answer "
        f"(Connection refused); running untraced"
    ]


# -- batches -----------------------------------------------------------------------------------

ONE_LAYER = '[[layers]]\nmodels = ["fake:p1", "fake:p2"]\n[aggregator]\nmodel = "fake:agg"\n'


def batch(*args: str) -> Result:
    from typer.testing import CliRunner

    from moa.cli.app import app

    return CliRunner().invoke(app, ["batch", *args, "-q"])


def test_a_batch_makes_a_trace_per_prompt(spans: Spans, recipe_file, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "q1", "prompt": "one"}\n{"id": 2, "prompt": "two"}\n')
    done = batch(str(source), "-o", str(tmp_path / "out.jsonl"), "-r", str(recipe_file(ONE_LAYER)))
    assert done.exit_code == 0, done.stderr
    workflows = spans.named("invoke_workflow")
    assert sorted(str((w.attributes or {})["moa.batch.item_id"]) for w in workflows) == [
        '"q1"',
        "2",
    ]
    assert all(w.parent is None for w in workflows)
    traces = {s.context.trace_id for s in spans.all}  # type: ignore[union-attr]
    assert len(traces) == 2
    for workflow in workflows:
        assert workflow.context is not None
        mine = [s for s in spans.all if s.context.trace_id == workflow.context.trace_id]  # type: ignore[union-attr]
        assert sorted(s.name for s in mine if s.name.startswith("chat")) == [
            "chat agg",
            "chat p1",
            "chat p2",
        ]


def test_a_batch_api_job_is_a_span_with_its_job_id(
    spans: Spans, upstream: FakeUpstream, tmp_path: Path
) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        ONE_LAYER + f'\n[providers.fake]\nbase_url = "{upstream.base_url}"\nbatch_api = true\n'
    )
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "q1", "prompt": "one"}\n{"id": "q2", "prompt": "two"}\n')
    out = tmp_path / "out.jsonl"
    done = batch(
        str(source), "-o", str(out), "-r", str(recipe), "--batch-api", "--poll-every", "0.01"
    )
    assert done.exit_code == 0, done.stderr
    jobs = spans.named("batch_api job")
    made = {j.id: j for model in ("p1", "p2", "agg") for j in upstream.batches.jobs_for(model)}
    said = {
        str((s.attributes or {})["moa.batch_api.job_id"]): dict(s.attributes or {}) for s in jobs
    }
    assert set(said) == set(made) and len(said) == 3
    for job_id, attributes in said.items():
        assert attributes["moa.batch_api.status"] == "completed"
        assert attributes["moa.batch_api.requests"] == 2
        assert spans.named(f"batch_api job {job_id}")
    p1 = next(a for a in said.values() if a["gen_ai.request.model"] == "p1")
    assert p1["gen_ai.provider.name"] == "fake"
    # Each prompt's parked calls are in its own trace, and say which job answered them.
    parked = spans.named("chat p1")
    assert len(parked) == 2
    notes = [str((s.attributes or {}).get("moa.notes")) for s in parked]
    assert all("answered by batch job" in n for n in notes)


# -- the command line's configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "MOA_OTEL": "0"}, False),
        ({"MOA_OTEL": "1"}, True),
    ],
)
def test_which_environments_turn_tracing_on(env: dict[str, str], on: bool) -> None:
    from moa.telemetry.setup import wanted

    assert wanted(env) is on


def test_an_endpoint_that_stops_answering_is_said_once_then_dropped() -> None:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from moa.telemetry.exporters import Reported

    class Gone(SpanExporter):
        calls = 0

        def export(self, spans: object) -> SpanExportResult:
            Gone.calls += 1
            return SpanExportResult.FAILURE

    said: list[str] = []
    exporter = Reported(Gone(), "http://collector:4318/v1/traces", said.append)
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert exporter.export([]) is SpanExportResult.SUCCESS  # dropped, not sent again
    assert Gone.calls == 1
    assert said == [
        "the OTLP endpoint http://collector:4318/v1/traces stopped answering; the rest is untraced"
    ]
