"""Row 5 — rate-limited batch: 100 prompts x 5 calls against a rate-limited upstream.

The issue's 60 requests/minute is scaled by TIME_SCALE: the upstream allows LIMIT requests in
any WINDOW_S seconds (a sliding window, answering 429 with Retry-After past it), i.e. 600/min.
Each prompt is a MoA run of 4 proposers and an aggregator; all prompts are submitted at once.
Four variants, one after another on the same upstream:

* moa, limiter unconfigured (a provider's defaults: 16 concurrent calls, rate learnt from 429s);
* moa, rpm configured to the limit;
* the reference: its `run_llm` with the fixed 1-2-4 s backoff (scaled the same way), proposers
  gathered, the aggregator through `run_llm` too; a prompt whose call meets a 4th 429 is lost
  (the reference crashes there, `response` unbound).

throughput = (calls / limit rate) / wall time: 1.0 is the limit itself.
"""

from __future__ import annotations

import asyncio
import time

import openai

from benchmarks.common import RowResult, build_moa, fake_registry
from benchmarks.reference import notebook_moa
from moa import RetryPolicy
from moa.errors import MoAError
from moa.policies.ratelimit import RateLimit
from moa.testing import FakeUpstream

TIME_SCALE = 0.1
LIMIT = 60
WINDOW_S = 60.0 * TIME_SCALE
PROPOSERS = ["p0", "p1", "p2", "p3"]
CALLS_PER_PROMPT = len(PROPOSERS) + 1


async def _moa(up: FakeUpstream, prompts: int, rate_limit: RateLimit | None) -> dict[str, float]:
    registry = fake_registry(up.base_url, rate_limit)
    # The default retry policy, as a user gets it.
    moa = build_moa(registry, [PROPOSERS], "agg", retry=RetryPolicy())
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        try:
            result = await moa.arun(f"prompt {i}")
            failed += len(result.failures) > 0
        except MoAError:
            failed += 1

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(prompts)))
    wall = time.monotonic() - started
    await moa.aclose()
    return {"wall_s": wall, "prompts_failed": failed}


async def _reference(up: FakeUpstream, prompts: int) -> dict[str, float]:
    client = openai.AsyncOpenAI(base_url=up.base_url, api_key="x", max_retries=0)
    lost = 0

    async def one(i: int) -> None:
        nonlocal lost
        try:
            await notebook_moa(
                client, None, [PROPOSERS], "agg", f"prompt {i}", backoff_scale=TIME_SCALE
            )
        except UnboundLocalError:
            lost += 1

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(prompts)))
    wall = time.monotonic() - started
    await client.close()
    return {"wall_s": wall, "prompts_failed": lost}


def run(quick: bool = False) -> RowResult:
    prompts = 20 if quick else 100
    calls = prompts * CALLS_PER_PROMPT
    ideal = calls * WINDOW_S / LIMIT
    row = RowResult("5", f"rate-limited batch: {prompts} prompts x 5 calls, {LIMIT}/{WINDOW_S:g}s")
    row.params = {
        "prompts": prompts,
        "calls": calls,
        "limit": f"{LIMIT} requests per {WINDOW_S:g} s sliding window (60/min scaled x10)",
        "reference_backoff_s": [1 * TIME_SCALE, 2 * TIME_SCALE, 4 * TIME_SCALE],
        "ideal_wall_s": ideal,
    }
    variants = {
        "moa unconfigured": lambda up: _moa(up, prompts, None),
        "moa rpm configured": lambda up: _moa(
            up, prompts, RateLimit(rpm=LIMIT * 60.0 / WINDOW_S, max_concurrency=16)
        ),
        "reference 1-2-4 backoff": lambda up: _reference(up, prompts),
    }
    with FakeUpstream() as up:
        for name, variant in variants.items():
            up.reset()
            up.rate_limit(LIMIT, WINDOW_S)
            m = asyncio.run(variant(up))
            received = len(up.calls)
            m["throttled"] = up.throttled
            m["requests"] = received
            row.raw[name] = m
            goal = name.startswith("moa")
            row.add(
                f"{name}: throughput / limit", ideal / m["wall_s"], "", ">= 0.9" if goal else None
            )
            row.add(
                f"{name}: 429 share of requests",
                up.throttled / max(1, received),
                "",
                "<= 0.05" if goal else None,
            )
            row.add(f"{name}: 429s", up.throttled)
            row.add(f"{name}: prompts failed/lost", int(m["prompts_failed"]))
    return row
