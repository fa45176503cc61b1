"""Every entry point that runs a mixture takes the same options (moa.engine.options): a run's
sampling, the aggregator's own sampling, a budget, what is asked of the answer, and tools."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import moa
from moa import MoA, ProviderConfig, Registry, RetryPolicy
from moa.engine.aggregator import Aggregator
from moa.engine.layer import ProposalLayer
from moa.engine.options import Options, RunOptions
from moa.errors import BudgetExceededError
from moa.events import Done
from moa.pricing import Price, PriceBook
from moa.providers.base import Capabilities
from moa.testing import FakeUpstream
from moa.trace import Result
from moa.types import Answering, Sampling

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def mixture(upstream: FakeUpstream) -> MoA:
    tools = Capabilities(tools=True)
    registry = Registry(
        {"fake": ProviderConfig("fake", upstream.base_url, capabilities=tools)}, env={}
    )
    prices = PriceBook({f"fake:{m}": Price(1000.0, 1000.0) for m in ("a", "agg")})
    return MoA(
        ProposalLayer("fake:a"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
        prices=prices,
    )


def moa_stream(m: MoA, **options: Any) -> Result:
    async def drain() -> Result:
        async for event in m.stream("q", **options):
            if isinstance(event, Done):
                return event.result
        raise AssertionError("no Done")

    return asyncio.run(drain())


def moa_arun(m: MoA, **options: Any) -> Result:
    return asyncio.run(m.arun("q", **options))


def moa_run(m: MoA, **options: Any) -> Result:
    return m.run("q", **options)


def api_stream(m: MoA, **options: Any) -> Result:
    async def drain() -> Result:
        async for event in moa.stream("q", recipe=m, **options):
            if isinstance(event, Done):
                return event.result
        raise AssertionError("no Done")

    return asyncio.run(drain())


def api_arun(m: MoA, **options: Any) -> Result:
    return asyncio.run(moa.arun("q", recipe=m, **options))


def api_run(m: MoA, **options: Any) -> Result:
    return moa.run("q", recipe=m, **options)


ENTRY_POINTS: list[Callable[..., Result]] = [
    moa_stream,
    moa_arun,
    moa_run,
    api_stream,
    api_arun,
    api_run,
]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_every_entry_point_passes_every_option_to_the_run(
    upstream: FakeUpstream, entry: Callable[..., Result]
) -> None:
    options: Options = {
        "sampling": Sampling(temperature=0.3),
        "aggregator_sampling": Sampling(max_tokens=7),
        "max_cost_usd": 10.0,
        "answering": Answering(n=1),
        "tools": [WEATHER],
    }
    entry(mixture(upstream), **options)
    proposer, aggregator = upstream.requests_for("a")[0], upstream.requests_for("agg")[0]
    assert proposer["temperature"] == 0.3 and "max_tokens" not in proposer
    assert aggregator["temperature"] == 0.3 and aggregator["max_tokens"] == 7
    assert [t["function"]["name"] for t in aggregator["tools"]] == ["get_weather"]
    assert "tools" not in proposer


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_every_entry_point_honours_a_budget(
    upstream: FakeUpstream, entry: Callable[..., Result]
) -> None:
    with pytest.raises(BudgetExceededError):
        entry(mixture(upstream), max_cost_usd=0.000001)
    assert upstream.requests == []  # refused before the first call


def test_the_keyword_options_and_the_frozen_value_name_the_same_things() -> None:
    fields = set(RunOptions.__dataclass_fields__) - {"proposal_deltas", "answer_deltas"}
    # `tools` is folded into `answering` when the value is made.
    assert set(Options.__annotations__) == fields | {"tools"}
    folded = RunOptions.of(tools=[WEATHER], aggregator_sampling=Sampling(max_tokens=3))
    assert folded.answering.tools is not None
    assert folded.final == Sampling(max_tokens=3)
    assert not folded.whole().proposal_deltas
