"""Row 9 — many workers, one key: `moa serve --workers 4` on one rate-limited key, with the
limits shared through Redis (`--redis`) and without (each worker believes it owns the key).

* upstream: `moa.testing.FakeUpstream` in this process, allowing LIMIT requests in any
  WINDOW_S seconds to all its clients together (429 with Retry-After beyond);
* `moa serve --workers 4` with a passthrough recipe (aggregator only) whose provider is
  configured at 0.95 of that limit (`rpm`), retrying 429s;
* load: CLIENTS concurrent clients sending chat completions back to back for DURATION_S,
  a new connection each (so the kernel spreads them over the workers).

Throughput / limit is the rate of accepted upstream calls over the middle 80 % of the phase
(start-up and drain left out) divided by the limit; the 429 share is over every upstream
call of the phase. The CPU cost of sharing is measured apart, in this process: the same
limiter steps of one call (slot with a concurrency cap, pacing, on_success) on Redis and per
process, CPU time of this process and of redis-server per call.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import RowResult, median
from benchmarks.rows.server import _cpu_s, _free_port, _server
from moa.testing import FakeUpstream
from moa.testing.redis_server import RedisServer

LIMIT = 40
WINDOW_S = 2.0
WORKERS = 4
CLIENTS = 32

RECIPE = """\
name = "shared"
[retry]
max_attempts = 20
max_elapsed_s = 60
base_delay_s = 0.05
[aggregator]
model = "fake:agg"
[providers.fake]
base_url = "{base_url}"
rpm = {rpm}
max_concurrency = 64
"""


def _serve(workdir: Path, upstream: FakeUpstream, redis_url: str | None, tag: str) -> Any:
    recipe = workdir / f"{tag}.toml"
    rpm = 0.95 * LIMIT * 60 / WINDOW_S
    recipe.write_text(RECIPE.format(base_url=upstream.base_url, rpm=rpm), encoding="utf-8")
    port = _free_port()
    argv = [sys.executable, "-m", "moa.cli.app", "serve", "-r", str(recipe), "--port", str(port)]
    argv += ["--workers", str(WORKERS), "--max-concurrent-runs", "256"]
    if redis_url:
        argv += ["--redis", redis_url]
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root / "src"), str(root)) if p)
    health = f"http://127.0.0.1:{port}/healthz"
    return port, _server(f"moa serve ({tag})", argv, health, workdir / f"{tag}.log", env)


async def _load(port: int, duration_s: float) -> int:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"model": "shared", "messages": [{"role": "user", "content": "hi"}]}
    done = 0
    stop = time.monotonic() + duration_s
    # A fresh connection per request: kept-alive connections stay with the worker that
    # accepted them, and a shared listening socket tends to hand most to one worker.
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one_client() -> None:
            nonlocal done
            while time.monotonic() < stop:
                response = await client.post(url, json=body)
                done += response.status_code == 200

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return done


def _phase(upstream: FakeUpstream, port: int, duration_s: float) -> dict[str, float]:
    upstream.reset()
    upstream.rate_limit(LIMIT, window_s=WINDOW_S)
    answered = asyncio.run(_load(port, duration_s))
    accepted = sorted(c.arrived for c in upstream.calls if c.status == 200)
    cut = len(accepted) // 10
    middle = accepted[cut : len(accepted) - cut]
    rate = (len(middle) - 1) / (middle[-1] - middle[0])
    return {
        "throughput_over_limit": rate / (LIMIT / WINDOW_S),
        "share_429": upstream.throttled / max(1, len(upstream.calls)),
        "upstream_calls": len(upstream.calls),
        "answered": answered,
    }


async def _limiter_steps(limiter: object, calls: int) -> None:
    from moa.policies.ratelimit import Limiter

    assert isinstance(limiter, Limiter)
    for _ in range(calls):
        async with limiter.slot(100):
            sent = limiter.now()
        limiter.on_success(sent)
    settled = getattr(limiter, "settled", None)
    if settled is not None:
        await settled()


def _cpu_per_call(calls: int) -> dict[str, float]:
    """CPU of one call's limiter steps (a provider with a concurrency cap and no rate: a
    slot, pacing, on_success), on Redis vs per process."""
    from moa.policies.ratelimit import Limits, RateLimit
    from moa.policies.redis import share_limits

    limit = {"fake": RateLimit(max_concurrency=16)}
    local = Limits(limit).get("fake")
    started = time.process_time()
    asyncio.run(_limiter_steps(local, calls))
    local_us = (time.process_time() - started) / calls * 1e6
    with RedisServer() as server:
        limits = Limits(limit)
        link = share_limits(limits, server.url)
        shared = limits.get("fake")

        async def run() -> tuple[float, float, float]:
            await _limiter_steps(shared, 50)  # connect, load the scripts
            redis_before = _cpu_s(server.pid or 0)
            began, wall = time.process_time(), time.perf_counter()
            await _limiter_steps(shared, calls)
            ours = time.process_time() - began
            wall = time.perf_counter() - wall
            theirs = _cpu_s(server.pid or 0) - redis_before
            await link.aclose()
            return ours, theirs, wall

        ours, theirs, wall = asyncio.run(run())
    return {
        "local_cpu_us": local_us,
        "redis_client_cpu_us": ours / calls * 1e6,
        "redis_server_cpu_us": theirs / calls * 1e6,
        "redis_wall_us": wall / calls * 1e6,
    }


def run(quick: bool = False) -> RowResult:
    row = RowResult("9", "many workers, one key: 4 serve workers, Redis vs per-process")
    if not RedisServer.available():
        row.skipped = "redis-server is not installed (apt install redis-server)"
        return row
    duration = 6.0 if quick else 15.0
    rounds = 1 if quick else 3
    row.params.update(
        limit=LIMIT, window_s=WINDOW_S, workers=WORKERS, clients=CLIENTS, duration_s=duration
    )
    samples: dict[str, list[dict[str, float]]] = {"redis": [], "per-process": []}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        upstream = stack.enter_context(FakeUpstream())
        redis = stack.enter_context(RedisServer())
        ports = {}
        for tag, url in (("redis", redis.url), ("per-process", None)):
            port, server = _serve(workdir, upstream, url, tag)
            stack.enter_context(server)
            ports[tag] = port
        for _ in range(rounds):  # alternate, so both see the same machine
            for tag, port in ports.items():
                samples[tag].append(_phase(upstream, port, duration))
    for tag, runs in samples.items():
        used = median([r["throughput_over_limit"] for r in runs])
        throttled = median([r["share_429"] for r in runs])
        row.add(f"{tag}: throughput / limit", used, goal=">= 0.9" if tag == "redis" else None)
        row.add(f"{tag}: 429 share", throttled, goal="<= 0.05" if tag == "redis" else None)
    cpu = _cpu_per_call(500 if quick else 3000)
    row.add("limiter CPU per call, per-process", cpu["local_cpu_us"], "us")
    row.add("limiter CPU per call, Redis (client)", cpu["redis_client_cpu_us"], "us")
    row.add("limiter CPU per call, Redis (server)", cpu["redis_server_cpu_us"], "us")
    row.add("limiter wall per call, Redis", cpu["redis_wall_us"], "us")
    row.raw.update(samples=samples, cpu=cpu)
    return row
