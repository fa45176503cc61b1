"""Many workers, one key (issue 14): rate limits shared through a real `redis-server`.

Time is scaled: the fake upstream allows 20 requests a second (a 1,200-RPM key), so a few
seconds stand for minutes of a real batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from moa.batch.shard import shard_of
from moa.policies.ratelimit import Limiter, Limits, RateLimit
from moa.policies.redis import limiter_factory, share_limits
from moa.policies.redis.limiter import Leases, RedisLimiter, keys
from moa.policies.redis.link import Link
from moa.testing import FakeUpstream, Reply

LIMIT = 40  # requests ...
WINDOW_S = 2.0  # ... in any two seconds, for all clients together
WARM_UP = 10
PACED_RPM = 0.95 * LIMIT * 60 / WINDOW_S  # the key's configured rate, just under the limit


def recipe(tmp_path: Path, upstream: FakeUpstream, **provider: object) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in provider.items())
    path = tmp_path / "recipe.toml"
    path.write_text(
        'name = "shared"\n[retry]\nmax_attempts = 20\nmax_elapsed_s = 60\nbase_delay_s = 0.05\n'
        '[[layers]]\nmodels = ["fake:p"]\n[aggregator]\nmodel = "fake:agg"\n'
        f'[providers.fake]\nbase_url = "{upstream.base_url}"\n{extra}'
    )
    return path


def write_input(path: Path, n: int) -> Path:
    path.write_text(
        "".join(json.dumps({"id": i, "prompt": f"prompt {i}"}) + "\n" for i in range(n))
    )
    return path


def moa(*args: str) -> list[str]:
    return [sys.executable, "-m", "moa.cli.app", *args]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("MOA_REDIS_URL", None)
    return env


def run_shards(tmp_path: Path, upstream: FakeUpstream, n: int, *extra: str) -> list[str]:
    """`moa batch --shard K/n` in n processes at once; their stderr."""
    source = write_input(tmp_path / "in.jsonl", 30 * n)
    path = recipe(tmp_path, upstream, rpm=PACED_RPM)
    args = ["batch", str(source), "-o", str(tmp_path / "out.jsonl"), "-r", str(path), "-q"]
    args += ["--no-cache", "-c", "8", *extra]
    processes = [
        subprocess.Popen(
            moa(*args, "--shard", f"{k}/{n}"),
            env=environment(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(1, n + 1)
    ]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    for process, stderr in zip(processes, errors, strict=True):
        assert process.returncode == 0, stderr
    return errors


def usage_of_limit(upstream: FakeUpstream, shards: int) -> tuple[float, float]:
    """(accepted requests per second / the limit, share of requests answered 429). The rate
    is taken while every process is running and warmed up (its first WARM_UP calls pay for
    imports and client set-up): from the WARM_UP-th call of the last process to start to the
    last call of the first to finish (which process sent a call is read from its prompt)."""
    sent_by: dict[int, list[float]] = {}
    with upstream._lock:  # the call log and the bodies are appended together
        logged = list(zip(upstream.calls, upstream.requests, strict=True))
    for call, body in logged:
        item = int(re.findall(r"prompt (\d+)", json.dumps(body))[0])
        sent_by.setdefault(shard_of(item, shards), []).append(call.arrived)
    start = max(sorted(times)[WARM_UP - 1] for times in sent_by.values())
    end = min(max(times) for times in sent_by.values())
    accepted = [c.arrived for c, _ in logged if c.status == 200 and start <= c.arrived <= end]
    rate = (len(accepted) - 1) / (end - start)
    return rate / (LIMIT / WINDOW_S), upstream.throttled / len(logged)


def test_every_limiter_of_a_key_shares_one_hash_tag() -> None:
    """Redis Cluster runs a script only on keys of one slot: all of a limiter's keys have
    the same hash tag, and different keys different ones."""
    tags = {name.split("}")[0] for name in keys("together:meta-llama/Llama-3").values()}
    assert tags == {"{moa:together:meta-llama/Llama-3"}
    assert keys("openai")["slots"] == "{moa:openai}:slots"


def test_local_models_keep_per_process_limits(redis_server) -> None:
    make = limiter_factory(Link(redis_server.url))
    assert type(make("local", RateLimit(max_concurrency=1), True)) is Limiter
    assert isinstance(make("openai", RateLimit(), True), RedisLimiter)


def test_two_processes_on_redis_use_the_shared_limit_without_429s(
    upstream: FakeUpstream, redis_server, tmp_path: Path
) -> None:
    upstream.rate_limit(LIMIT, window_s=WINDOW_S)
    run_shards(tmp_path, upstream, 2, "--redis", redis_server.url)
    used, throttled = usage_of_limit(upstream, 2)
    assert used >= 0.9, f"used {used:.2f} of the limit"
    assert throttled <= 0.05, f"{throttled:.1%} of calls answered 429"
    merged = subprocess.run(
        moa("batch", "merge", "-o", str(tmp_path / "out.jsonl"), "-i", str(tmp_path / "in.jsonl")),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merged.returncode == 0, merged.stderr
    ids = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert ids == list(range(60))


def test_without_redis_each_process_believes_it_owns_the_key(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The overshoot Redis removes: two processes pace at the key's rate each, and together
    they send about twice what the upstream accepts."""
    upstream.rate_limit(LIMIT, window_s=WINDOW_S)
    run_shards(tmp_path, upstream, 2)
    _, throttled = usage_of_limit(upstream, 2)
    assert throttled > 0.08, f"only {throttled:.1%} of calls answered 429"


async def test_a_429_seen_by_one_worker_pauses_and_slows_them_all(redis_server) -> None:
    from moa.errors import ProviderError

    first, second = Limits(), Limits()
    links = [share_limits(first, redis_server.url), share_limits(second, redis_server.url)]
    one, other = first.get("fake"), second.get("fake")
    async with one.slot():
        sent = one.now()
    throttled = ProviderError(
        "HTTP 429", provider="fake", model="m", status_code=429, retry_after=0.3
    )
    one.on_error(throttled, sent)
    assert isinstance(one, RedisLimiter)
    await one.settled()
    state = await links[1].call(lambda r: r.hgetall(keys("fake")["state"]))
    assert float(state[b"rpm"]) >= 1  # a rate learned, for every worker
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with other.slot():  # the other worker waits out the pause it never saw itself
        waited = loop.time() - started
    assert waited >= 0.2
    for link in links:
        await link.aclose()


HOLDER = """
import asyncio, sys
from moa.policies.ratelimit import Limits, RateLimit
from moa.policies.redis import share_limits
from moa.policies.redis.limiter import Leases

async def main():
    limits = Limits({"fake": RateLimit(max_concurrency=2)})
    share_limits(limits, sys.argv[1], leases=Leases(lease_s=float(sys.argv[2])))
    limiter = limits.get("fake")
    async with limiter.slot(), limiter.slot():
        print("holding", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_killed_workers_slots_return_within_the_lease(redis_server) -> None:
    lease_s = 1.0
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, redis_server.url, str(lease_s), stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    assert (await holder.stdout.readline()).strip() == b"holding"
    limits = Limits({"fake": RateLimit(max_concurrency=2)})
    link = share_limits(limits, redis_server.url, leases=Leases(lease_s=lease_s))
    limiter = limits.get("fake")
    # While the holder lives it renews its leases: nobody else gets a slot, for longer
    # than a lease.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(lease_s * 1.5), limiter.slot():
            pass
    holder.send_signal(signal.SIGKILL)
    await holder.wait()
    killed = asyncio.get_running_loop().time()
    async with limiter.slot(), limiter.slot():
        back = asyncio.get_running_loop().time() - killed
    assert back <= lease_s + 0.2, f"slots came back {back:.2f}s after the kill"
    await link.aclose()


def test_redis_stopped_mid_batch_loses_nothing_and_warns_once(
    upstream: FakeUpstream, redis_server, tmp_path: Path
) -> None:
    """Redis dies after the 10th call and comes back at the 20th: the batch finishes with
    every answer, says once that it lost Redis, and uses Redis again when it is back."""
    calls = 0
    lock = threading.Lock()

    def answer(body: dict) -> str:
        nonlocal calls
        with lock:
            calls += 1
            if calls == 10:
                redis_server.stop()
            elif calls == 20:
                redis_server.start()
        return "answer"

    upstream.script("p", Reply(text=answer, delay_s=0.01))
    source = write_input(tmp_path / "in.jsonl", 40)
    path = recipe(tmp_path, upstream, rpm=1200, max_concurrency=4)
    out = tmp_path / "out.jsonl"
    args = ["batch", str(source), "-o", str(out), "-r", str(path), "-q", "--no-cache", "-c", "4"]
    done = subprocess.run(
        moa(*args, "--redis", redis_server.url),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 40
    lost = [line for line in done.stderr.splitlines() if "lost Redis" in line]
    assert len(lost) == 1, done.stderr
    assert "per-process limits" in lost[0]
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        assert client.exists(keys("fake")["state"]), "Redis was not used again after it returned"


def test_unreachable_redis_at_start_is_a_clear_error_unless_optional(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    from moa.testing.redis_server import RedisServer

    nowhere = RedisServer().url  # a free port nobody listens on
    source = write_input(tmp_path / "in.jsonl", 3)
    args = ["batch", str(source), "-o", str(tmp_path / "out.jsonl"), "-q", "--no-cache"]
    args += ["-r", str(recipe(tmp_path, upstream)), "--redis", nowhere]
    refused = subprocess.run(moa(*args), env=environment(), capture_output=True, text=True)
    assert refused.returncode == 2
    assert "cannot reach Redis" in refused.stderr and "--redis-optional" in refused.stderr
    optional = subprocess.run(
        moa(*args, "--redis-optional"), env=environment(), capture_output=True, text=True
    )
    assert optional.returncode == 0, optional.stderr
    assert "unreachable" in optional.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
