"""Batches in traces: each prompt of `moa batch` a trace of its own, each Batch API job a span."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import StatusCode

from moa.telemetry.conventions import Attributes, Conventions
from moa.telemetry.core import ITEM, tracer


@contextmanager
def batch_item(item_id: object) -> Iterator[None]:
    """One prompt of a batch: the run inside is a trace of its own, whatever is current, and
    its workflow span names the prompt's id (as the input file writes it)."""
    if tracer() is None:
        yield
        return
    alone = otel_context.set_value(ITEM, json.dumps(item_id), otel_context.Context())
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
