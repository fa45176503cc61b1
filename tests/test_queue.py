"""A work queue for many workers on many hosts (issue 21, part 2): `moa batch --queue`
enqueues once, `moa worker` answers with the recipe the queue carries, a dead worker's prompts
are taken over, and the output holds each id exactly once. Against a real `redis-server` and
the fake upstream; time is scaled (a visibility timeout of a second stands for minutes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from conftest import wait_until
from moa import recipes
from moa.batch.items import BatchStats, Item, load_input
from moa.batch.jsonl import AppendLog
from moa.batch.queue.work import WorkQueue
from moa.batch.queued import QueuedRun, collect, enqueue
from moa.batch.worker import Worker
from moa.cli.app import app
from moa.testing import FakeUpstream, Reply
from moa.types import Sampling, Usage

RECIPE = """name = "queued"
[retry]
max_attempts = 2
base_delay_s = 0.01
[[layers]]
models = ["fake:p1", "fake:p2"]
[aggregator]
model = "fake:agg"
[providers.fake]
base_url = "{base_url}"
{extra}"""


def write_recipe(tmp_path: Path, upstream: FakeUpstream, extra: str = "") -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.format(base_url=upstream.base_url, extra=extra), encoding="utf-8")
    return path


def write_input(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "prompt": f"prompt {i}"}) + "\n" for i in range(n))
    )
    return path


def moa(*args: str) -> list[str]:
    return [sys.executable, "-m", "moa.cli.app", *args]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("MOA_REDIS_URL", None)
    return {**env, **extra}


def queued_run(recipe: Path) -> QueuedRun:
    """The run `moa batch -r RECIPE --no-cache` puts on the queue."""
    return QueuedRun(recipes.load(recipe), Sampling(), no_cache=True)


def put_on_queue(url: str, recipe: Path, source: Path, visibility_s: float = 30.0) -> int:
    """Enqueue as `moa batch` does, without working on the prompts."""

    async def go() -> int:
        queue = WorkQueue(url)
        try:
            return await enqueue(queue, queued_run(recipe), load_input(source), visibility_s)
        finally:
            await queue.aclose()

    return asyncio.run(go())


def on_queue(url: str, step):
    async def go():
        queue = WorkQueue(url)
        try:
            return await step(queue)
        finally:
            await queue.aclose()

    return asyncio.run(go())


def ids_in(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_enqueueing_again_adds_nothing_and_a_failed_prompt_is_queued_again(
    redis_server, upstream, tmp_path: Path
) -> None:
    recipe, source = write_recipe(tmp_path, upstream), write_input(tmp_path, 12)
    assert put_on_queue(redis_server.url, recipe, source) == 12
    assert put_on_queue(redis_server.url, recipe, source) == 0  # a rerun enqueues nothing

    async def answer_one_fail_one(queue: WorkQueue) -> tuple[int, int]:
        first, second = await queue.take("w", 2)
        await queue.record("w", first, json.dumps({"record": {"id": 0}}))
        await queue.fail(second, "upstream said no")
        stream = await queue.client().xlen(queue.keys["stream"])
        return stream, await queue.outstanding()

    assert on_queue(redis_server.url, answer_one_fail_one) == (10, 10)
    # The answered prompt stays answered; the failed one goes back on the queue.
    assert put_on_queue(redis_server.url, recipe, source) == 1


def test_a_queue_holding_another_run_is_refused(redis_server, upstream, tmp_path: Path) -> None:
    recipe, source = write_recipe(tmp_path, upstream), write_input(tmp_path, 3)
    put_on_queue(redis_server.url, recipe, source)
    other = tmp_path / "other.toml"
    other.write_text(recipe.read_text().replace('"fake:p2"', '"fake:p3"'))
    out = tmp_path / "out.jsonl"
    args = ["batch", str(source), "-o", str(out), "-r", str(other), "--queue", redis_server.url]
    done = CliRunner().invoke(app, [*args, "-q", "--no-cache"])
    assert done.exit_code == 2
    assert "carries another run" in done.stderr and "moa queue clear" in done.stderr
    # Another name on the same Redis is another queue.
    named = f"{redis_server.url}?name=second"
    args[-1] = named
    done = CliRunner().invoke(app, [*args, "-q", "--no-cache"])
    assert done.exit_code == 0, done.stderr
    assert ids_in(out) == [0, 1, 2]


def test_a_worker_needs_no_recipe_file_and_the_batch_collects_its_answers(
    redis_server, upstream, tmp_path: Path
) -> None:
    recipe, source = write_recipe(tmp_path, upstream), write_input(tmp_path, 8)
    put_on_queue(redis_server.url, recipe, source)
    text = recipe.read_text()
    recipe.unlink()  # the worker's host has no recipe: the queue carries it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    worker = subprocess.run(
        moa("worker", "--queue", redis_server.url, "-q"),
        cwd=elsewhere,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    assert "answered 8" in worker.stderr
    assert len(upstream.requests_for("p2")) == 8  # the recipe's proposers, from the queue
    assert len(upstream.requests_for("agg")) == 8
    recipe.write_text(text)
    out = tmp_path / "out.jsonl"
    args = ["batch", str(source), "-o", str(out), "-r", str(recipe), "--queue", redis_server.url]
    done = CliRunner().invoke(app, [*args, "-q", "--no-cache"])
    assert done.exit_code == 0, done.stderr
    assert "0 prompt(s) queued, 8 already there" in done.stderr
    assert ids_in(out) == list(range(8))
    assert len(upstream.requests_for("agg")) == 8  # nothing answered twice
    assert json.loads(out.read_text().splitlines()[0])["answer"] == "answer from agg"


def test_a_worker_without_the_api_key_fails_in_one_line_and_takes_nothing(
    redis_server, upstream, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, upstream, 'api_key_env = "MOA_QUEUE_TEST_KEY"\n')
    put_on_queue(redis_server.url, recipe, write_input(tmp_path, 4))
    worker = subprocess.run(
        moa("worker", "--queue", redis_server.url),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2
    assert worker.stderr.strip().splitlines() == [
        "error: provider 'fake' needs an API key: set MOA_QUEUE_TEST_KEY (or run offline "
        "with `-r local`)"
    ]
    status = on_queue(redis_server.url, lambda q: q.status())
    assert (status.waiting, status.pending, status.answered) == (4, 0, 0)
    assert "MOA_QUEUE_TEST_KEY" in json.dumps(on_queue(redis_server.url, lambda q: q.run()).recipe)


def test_a_killed_workers_prompts_are_taken_over_and_answered_once(
    redis_server, upstream, tmp_path: Path
) -> None:
    recipe, source = write_recipe(tmp_path, upstream), write_input(tmp_path, 10)
    put_on_queue(redis_server.url, recipe, source, visibility_s=1.0)
    with FakeUpstream() as stuck:  # the doomed worker's upstream never answers in time
        for model in ("p1", "p2"):
            stuck.script(model, Reply("too late", delay_s=120))
        doomed = subprocess.Popen(
            moa("worker", "--queue", redis_server.url, "-c", "4", "-q"),
            env=environment(MOA_FAKE_BASE_URL=stuck.base_url),
            stderr=subprocess.DEVNULL,
        )
        try:

            def held() -> int:
                status = on_queue(redis_server.url, lambda q: q.status())
                return sum(w.pending for w in status.workers)

            wait_until(lambda: held() == 4, timeout_s=60, what="the worker to hold 4 prompts")
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)

        def dead() -> list:
            return on_queue(redis_server.url, lambda q: q.status()).dead

        wait_until(lambda: len(dead()) == 1, timeout_s=30, what="the worker to be seen dead")
        status = CliRunner().invoke(app, ["queue", "status", redis_server.url])
        assert status.exit_code == 0, status.stderr
        assert "dead" in status.stdout and "4 held" in status.stdout
        assert "0 of 10 answered, 6 waiting, 4 in work" in status.stdout

        out = tmp_path / "out.jsonl"
        args = ["batch", str(source), "-o", str(out), "-r", str(recipe), "-q", "--no-cache"]
        done = subprocess.run(
            moa(*args, "--queue", redis_server.url, "--visibility-timeout", "1"),
            env=environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "took over 4 from silent workers" in done.stderr
    assert sorted(ids_in(out)) == list(range(10))
    assert ids_in(out) == list(range(10))  # input order, each id once
    final = on_queue(redis_server.url, lambda q: q.status())
    assert (final.answered, final.todo, final.pending) == (10, 0, 0)


def test_two_workers_answering_one_prompt_leave_one_answer(
    redis_server, upstream, tmp_path
) -> None:
    """The first worker to answer wins; the other's answer is dropped, not written twice."""
    recipe, source = write_recipe(tmp_path, upstream), write_input(tmp_path, 1)
    put_on_queue(redis_server.url, recipe, source)
    answered_by_b, a_holds_it = asyncio.Event(), asyncio.Event()

    async def slow_job(item: Item):
        a_holds_it.set()
        await answered_by_b.wait()  # answers after B took the prompt over and answered it
        return {"answer": "from A"}, Usage(1, 1)

    async def fast_job(item: Item):
        return {"answer": "from B"}, Usage(1, 1)

    async def both(queue: WorkQueue) -> tuple[list[int], list[str], int]:
        # A renews so rarely, and B's timeout is so short, that B claims what A holds.
        a = Worker(queue, slow_job, visibility_s=300, consumer="A")
        b = Worker(queue, fast_job, visibility_s=0.05, consumer="B", on_answer=answered_by_b.set)

        async def nothing_left() -> bool:
            return await queue.outstanding() == 0

        task_a = asyncio.create_task(a.run(nothing_left))
        await a_holds_it.wait()
        await b.run(nothing_left)
        await task_a
        out = tmp_path / "out.jsonl"
        with AppendLog(out) as log:
            await collect(queue, load_input(source), log, BatchStats())
        lines = out.read_text().splitlines()
        status = await queue.status()
        return (
            [a.stats.second, b.stats.answered],
            [json.loads(x)["answer"] for x in lines],
            status.second_answers,
        )

    counts, answers, dropped = on_queue(redis_server.url, both)
    assert counts == [1, 1]  # both answered it; A's answer came second
    assert answers == ["from B"]
    assert dropped == 1


def test_the_status_verb_shows_progress_and_the_workers(
    redis_server, upstream, tmp_path: Path
) -> None:
    recipe, source = write_recipe(tmp_path, upstream), write_input(tmp_path, 5)
    put_on_queue(redis_server.url, recipe, source)

    async def answer_two(queue: WorkQueue) -> None:
        taken = await queue.take("host-a", 3)
        for item in taken[:2]:
            await queue.record("host-a", item, json.dumps({"record": {"id": 0}}))

    on_queue(redis_server.url, answer_two)
    shown = CliRunner().invoke(app, ["queue", "status", redis_server.url])
    assert shown.exit_code == 0, shown.output
    assert "recipe queued" in shown.output
    assert "2 of 5 answered, 2 waiting, 1 in work, 0 failed" in shown.output
    assert "host-a" in shown.output and "1 held" in shown.output
