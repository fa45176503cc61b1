"""Shared pieces of the benchmark rows: results, statistics, upstreams, MoA builders."""

from __future__ import annotations

import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from moa import MoA, ProviderConfig, Registry, RetryPolicy
from moa.engine.aggregator import Aggregator
from moa.engine.layer import ProposalLayer
from moa.policies.ratelimit import RateLimit


@dataclass
class Metric:
    name: str
    value: float | int | None
    unit: str = ""
    goal: str | None = None  # e.g. "<= 1.02"
    met: bool | None = None

    def fmt(self) -> str:
        v = self.value
        if v is None:
            return "n/a"
        if isinstance(v, int):
            return f"{v}{self.unit and ' ' + self.unit}"
        return f"{v:.4g}{self.unit and ' ' + self.unit}"


@dataclass
class RowResult:
    row: str
    title: str
    metrics: list[Metric] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    def add(
        self,
        name: str,
        value: float | int | None,
        unit: str = "",
        goal: str | None = None,
    ) -> Metric:
        metric = Metric(name, value, unit, goal, _meets(value, goal))
        self.metrics.append(metric)
        return metric

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _meets(value: float | int | None, goal: str | None) -> bool | None:
    if goal is None or value is None:
        return None
    op, _, bound = goal.partition(" ")
    limit = float(bound)
    return {"<=": value <= limit, ">=": value >= limit, "<": value < limit, ">": value > limit}[op]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile, p in [0, 100]."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fake_registry(base_url: str, rate_limit: RateLimit | None = None) -> Registry:
    """A registry whose `fake` provider is the given upstream (defaults like any provider)."""
    config = ProviderConfig("fake", base_url)
    if rate_limit is not None:
        config = ProviderConfig("fake", base_url, rate_limit=rate_limit)
    return Registry({"fake": config}, env={})


def build_moa(
    registry: Registry,
    layers: Sequence[Sequence[str]],
    aggregator: str,
    *,
    retry: RetryPolicy | None = None,
    min_proposals: int | None = None,
    deadline_s: float | None = None,
    timeout_s: float = 120.0,
) -> MoA:
    return MoA(
        *(
            ProposalLayer(
                *(f"fake:{m}" for m in models), min_proposals=min_proposals, deadline_s=deadline_s
            )
            for models in layers
        ),
        Aggregator(f"fake:{aggregator}"),
        registry=registry,
        retry=retry or RetryPolicy(max_attempts=1),
        timeout_s=timeout_s,
    )


@contextmanager
def raw_upstream(*args: str) -> Iterator[RawUpstream]:
    """`benchmarks.rawserver` in a child process, its CPU not counted in ours: zero latency,
    or paced by `args` (e.g. "--ttft-ms", "50"; see `python -m benchmarks.rawserver -h`)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.rawserver", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"rawserver did not start: {line!r}")
        yield RawUpstream(int(line.split()[1]))
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class RawUpstream:
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def cpu_s(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/cpu", timeout=5) as r:
            return float(r.read())
