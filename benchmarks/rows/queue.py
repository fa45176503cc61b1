"""Row 14 — the work queue (`moa batch --queue`, `moa worker`) against one shared key limit,
with 1 and 4 workers, and with one of 4 killed by SIGKILL mid-run.

* upstream: `moa.testing.FakeUpstream` in this process, allowing LIMIT requests in any
  WINDOW_S seconds to all its clients together (429 with Retry-After beyond), each answer
  after LATENCY_S;
* a passthrough recipe (aggregator only: one call a prompt) whose provider is configured at
  0.95 of that limit (`rpm`), retrying 429s; the workers share its limits on the queue's Redis
  (the default);
* 1 worker: `moa batch IN -o OUT --queue URL -c 8` alone (it enqueues, works, collects);
  4 workers: the same and three `moa worker --queue URL -c 8`, started once the run is on
  the queue; each phase on a queue of its own name.

Throughput / limit is the rate of accepted upstream calls over the middle 80 % of the phase
divided by the limit; "once every worker runs" is the same from the moment the last worker
registered on the queue (start-up costs the others CPU on a small machine) to the drain; the
429 share is over every upstream call of the phase. In the SIGKILL
phase one `moa worker` is killed once a fifth of the prompts are answered; the prompts it held
(read from the stream's pending list) are answered by the others once idle past the
visibility timeout. Time to recover: from the kill until the last of them is recorded.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.common import RowResult
from benchmarks.rows.batch_api import moa_child_env
from moa.testing import FakeUpstream
from moa.testing.latency import Fixed, Profile
from moa.testing.redis_server import RedisServer

LIMIT = 40
WINDOW_S = 2.0
LATENCY_S = 0.1
CONCURRENCY = 8
VISIBILITY_S = 3.0

RECIPE = """\
name = "queued"
[retry]
max_attempts = 20
max_elapsed_s = 120
base_delay_s = 0.05
[aggregator]
model = "fake:agg"
[providers.fake]
base_url = "{base_url}"
rpm = {rpm}
max_concurrency = 64
"""


def _moa(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "moa.cli.app", *args],
        env=moa_child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout_s:g} s")
        time.sleep(0.05)


class _Queue:
    """What the benchmark reads of one queue, straight from its Redis keys."""

    def __init__(self, url: str, name: str) -> None:
        import redis

        from moa.batch.queue.link import GROUP, keys

        self.url = f"{url}?name={name}"
        self.keys, self.group = keys(name), GROUP
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def started(self) -> bool:
        return bool(self.client.hexists(self.keys["meta"], "recipe"))

    def workers(self) -> int:
        """Workers that have started answering (each registers as it starts)."""
        return int(self.client.hlen(self.keys["workers"]))

    def outstanding(self) -> int:
        return int(self.client.scard(self.keys["todo"]))

    def held_by(self, pid: int) -> list[str]:
        """The prompt keys the worker of that pid holds (delivered, not acknowledged)."""
        stream = self.keys["stream"]
        consumers = self.client.xinfo_consumers(stream, self.group)
        names = [c["name"] for c in consumers if f":{pid}:" in c["name"]]
        held = []
        for name in names:
            pending = self.client.xpending_range(stream, self.group, "-", "+", 1000, name)
            for entry in pending:
                found = self.client.xrange(stream, entry["message_id"], entry["message_id"])
                held += [fields["key"] for _, fields in found]
        return held

    def recorded(self, prompt_keys: list[str]) -> int:
        if not prompt_keys:
            return 0
        return sum(v is not None for v in self.client.hmget(self.keys["results"], prompt_keys))

    def second_answers(self) -> int:
        return int(self.client.hget(self.keys["meta"], "second_answers") or 0)


def _phase(
    upstream: FakeUpstream,
    redis_url: str,
    work: Path,
    tag: str,
    prompts: int,
    workers: int,
    kill: bool = False,
) -> dict[str, Any]:
    upstream.reset()
    upstream.rate_limit(LIMIT, WINDOW_S)
    upstream.latency(None, Profile(ttft=Fixed(LATENCY_S)))
    queue = _Queue(redis_url, tag)
    out = work / f"{tag}.jsonl"
    args = ["batch", str(work / "in.jsonl"), "-o", str(out), "-r", str(work / "recipe.toml")]
    args += ["--queue", queue.url, "--visibility-timeout", f"{VISIBILITY_S:g}"]
    args += ["-c", str(CONCURRENCY), "--no-cache", "-q"]
    m: dict[str, Any] = {}
    with ExitStack() as stack:
        started = time.monotonic()
        batch = _moa(*args)
        stack.callback(_stop, batch)
        _wait(queue.started, 60, "the run to be on the queue")
        helpers = []
        for _ in range(workers - 1):
            helper = _moa("worker", "--queue", queue.url, "-c", str(CONCURRENCY), "-q")
            stack.callback(_stop, helper)
            helpers.append(helper)
        # From here on every worker answers: start-up (imports, the recipe built) is CPU
        # the others lose on a busy 2-core machine, so the rate is also read after it.
        _wait(lambda: queue.workers() >= workers or batch.poll() is not None, 120, "workers")
        all_running = time.monotonic()
        if kill:
            chosen: list[tuple[subprocess.Popen[str], list[str]]] = []

            def ready() -> bool:
                if batch.poll() is not None or queue.outstanding() == 0:
                    raise RuntimeError("the run ended before a worker to kill held a prompt")
                if queue.outstanding() > prompts * 4 // 5:
                    return False
                holding = [(h, queue.held_by(h.pid)) for h in helpers]
                chosen[:] = [(h, keys) for h, keys in holding if keys][:1]
                return bool(chosen)

            _wait(ready, 120, "a fifth answered and a `moa worker` holding prompts")
            ((victim, held),) = chosen
            victim.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            victim.wait(timeout=10)
            _wait(lambda: queue.recorded(held) == len(held), 120, "the held prompts answered")
            m.update(held_at_kill=len(held), recover_s=time.monotonic() - killed_at)
        stderr = batch.communicate(timeout=300)[1]
        m["wall_s"] = time.monotonic() - started
        if batch.returncode != 0:
            raise RuntimeError(f"moa batch --queue exited {batch.returncode}:\n{stderr[-2000:]}")
        for helper in helpers:
            helper.wait(timeout=60)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    accepted = sorted(c.arrived for c in upstream.calls if c.status == 200)
    cut = len(accepted) // 10
    middle = accepted[cut : len(accepted) - cut]
    rate = (len(middle) - 1) / (middle[-1] - middle[0])
    steady = [t for t in accepted[: len(accepted) - cut] if t >= all_running]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 10 else None
    m.update(
        throughput_over_limit=rate / (LIMIT / WINDOW_S),
        all_running_over_limit=None if steady_rate is None else steady_rate / (LIMIT / WINDOW_S),
        all_running_calls=len(steady),
        share_429=upstream.throttled / max(1, len(upstream.calls)),
        upstream_calls=len(upstream.calls),
        accepted_calls=len(accepted),
        answered_ids=len(set(ids)),
        output_lines=len(ids),
        lost=prompts - len(set(ids)),
        second_answers=queue.second_answers(),
    )
    return m


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def run(quick: bool = False) -> RowResult:
    row = RowResult("14", "work queue: 1 and 4 workers on one key, one of 4 SIGKILLed")
    if not RedisServer.available():
        row.skipped = "redis-server is not installed (apt install redis-server)"
        return row
    prompts = 80 if quick else 300
    row.params.update(
        prompts=prompts,
        limit=f"{LIMIT} requests per {WINDOW_S:g} s (sliding window), all clients together",
        rpm_configured=0.95 * LIMIT * 60 / WINDOW_S,
        latency_s=LATENCY_S,
        concurrency_per_worker=CONCURRENCY,
        visibility_timeout_s=VISIBILITY_S,
    )
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        upstream = stack.enter_context(FakeUpstream())
        redis = stack.enter_context(RedisServer())
        (work / "in.jsonl").write_text(
            "".join(json.dumps({"id": i, "prompt": f"question {i}"}) + "\n" for i in range(prompts))
        )
        rpm = 0.95 * LIMIT * 60 / WINDOW_S
        (work / "recipe.toml").write_text(RECIPE.format(base_url=upstream.base_url, rpm=rpm))
        phases = {
            "1 worker": _phase(upstream, redis.url, work, "one", prompts, 1),
            "4 workers": _phase(upstream, redis.url, work, "four", prompts, 4),
            "1 of 4 killed": _phase(upstream, redis.url, work, "killed", prompts, 4, kill=True),
        }
    row.raw.update(phases)
    for tag, m in phases.items():
        row.add(f"{tag}: throughput / limit", m["throughput_over_limit"], goal=">= 0.9")
        row.add(f"{tag}: same, once every worker runs", m["all_running_over_limit"])
        row.add(f"{tag}: 429 share", m["share_429"], goal="<= 0.05")
        row.add(f"{tag}: prompts lost", m["lost"], goal="<= 0")
        row.add(f"{tag}: output lines / prompts", m["output_lines"] / prompts, goal="<= 1")
        row.add(f"{tag}: wall", m["wall_s"], "s")
    killed = phases["1 of 4 killed"]
    row.add("SIGKILL: prompts the killed worker held", killed["held_at_kill"])
    row.add("SIGKILL: second answers dropped", killed["second_answers"])
    row.add("SIGKILL: time to recover", killed["recover_s"], "s")
    row.add("SIGKILL: time to recover / visibility timeout", killed["recover_s"] / VISIBILITY_S)
    return row
