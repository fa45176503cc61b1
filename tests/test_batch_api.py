"""`moa batch --batch-api`: each layer's calls as Batch API jobs (one per provider and model,
split at the limits), layers chained through the answers, no real-time call, quorum and
failures per prompt, expiry, the budget, a real SIGKILL and resume, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from moa.batch.batch_api.state import state_path
from moa.cli.app import app
from moa.testing import FakeUpstream, Reply

TWO_LAYERS = """
[[layers]]
models = ["fake:p1", "fake:p2"]
[[layers]]
models = ["fake:p1", "fake:p2"]
[aggregator]
model = "fake:agg"
"""
ONE_LAYER = """
[[layers]]
models = ["fake:p1", "fake:p2"]
[aggregator]
model = "fake:agg"
"""


def recipe(tmp_path: Path, up: FakeUpstream, body: str, batch_api: str = "true") -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(
        body + f'\n[providers.fake]\nbase_url = "{up.base_url}"\nbatch_api = {batch_api}\n'
    )
    return path


def prompts(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"prompt {i}"}) + "\n" for i in range(n))
    )
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["batch", *args, "--batch-api", "--poll-every", "0.01", "-q"])


def output(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def jobs(up: FakeUpstream, model: str) -> list[int]:
    """The sizes of the jobs created for `model`, in order."""
    return [len(j.lines) for j in up.batches.jobs_for(model)]


def lines_of(up: FakeUpstream, model: str) -> list[list[dict]]:
    return [[line["body"] for line in j.lines] for j in up.batches.jobs_for(model)]


def test_one_job_per_layer_and_model_and_no_chat_call(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    done = run(
        str(prompts(tmp_path, 3)), "-o", str(out), "-r", str(recipe(tmp_path, upstream, TWO_LAYERS))
    )
    assert done.exit_code == 0, done.stderr
    assert jobs(upstream, "p1") == [3, 3] and jobs(upstream, "p2") == [3, 3]
    assert jobs(upstream, "agg") == [3]
    assert upstream.calls == [] and upstream.requests == []  # nothing real-time
    rows = output(out)
    assert sorted(rows) == ["q0", "q1", "q2"]
    assert all(r["answer"] == "answer from agg" for r in rows.values())
    assert len(rows["q0"]["batch_api"]["jobs"]) == 5
    assert "layer 1: 2 job(s), 6 requests" in done.stderr


def test_each_layer_is_built_from_the_answers_of_the_one_before(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.script(
        "p1",
        Reply(
            text=lambda body: (
                "p1 on " + body["messages"][-1]["content"] + f" after {len(body['messages'])}"
            )
        ),
    )
    out = tmp_path / "out.jsonl"
    done = run(
        str(prompts(tmp_path, 2)), "-o", str(out), "-r", str(recipe(tmp_path, upstream, TWO_LAYERS))
    )
    assert done.exit_code == 0, done.stderr
    first, second = lines_of(upstream, "p1")
    assert all(len(body["messages"]) == 1 for body in first)  # layer 1: the prompt alone
    systems = sorted(body["messages"][0]["content"] for body in second)
    assert "1. p1 on prompt 0 after 1" in systems[0] and "2. answer from p2" in systems[0]
    assert "1. p1 on prompt 1 after 1" in systems[1]
    (aggregated,) = lines_of(upstream, "agg")
    assert any("p1 on prompt 0 after 2" in body["messages"][0]["content"] for body in aggregated)


def test_jobs_are_split_at_the_providers_request_limit(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    limits = "{ max_requests = 2 }"
    done = run(
        str(prompts(tmp_path, 5)),
        "-o",
        str(out),
        "-r",
        str(recipe(tmp_path, upstream, ONE_LAYER, limits)),
    )
    assert done.exit_code == 0, done.stderr
    assert jobs(upstream, "p1") == [2, 2, 1] and jobs(upstream, "agg") == [2, 2, 1]


def test_a_failed_request_is_a_failed_call_of_its_prompt(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.script("p2", Reply(status=500), Reply("fine"))
    out = tmp_path / "out.jsonl"
    done = run(
        str(prompts(tmp_path, 3)), "-o", str(out), "-r", str(recipe(tmp_path, upstream, ONE_LAYER))
    )
    assert done.exit_code == 0, done.stderr
    calls = [
        c for r in output(out).values() for c in r["trace"]["calls"] if c["model"] == "fake:p2"
    ]
    failed = [c for c in calls if c["status"] == "failed"]
    assert len(failed) == 1 and "HTTP 500 in the batch job" in failed[0]["error"]
    (aggregated,) = lines_of(upstream, "agg")  # that prompt's aggregator read one proposal
    assert sorted(
        body["messages"][0]["content"].count("\n1. ")
        + body["messages"][0]["content"].count("\n2. ")
        for body in aggregated
    ) == [1, 2, 2]


def test_an_expired_job_has_its_unrun_requests_resubmitted(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.batches.expire(1, jobs=1)
    out = tmp_path / "out.jsonl"
    done = run(
        str(prompts(tmp_path, 3)),
        "-o",
        str(out),
        "-r",
        str(
            recipe(
                tmp_path,
                upstream,
                '[[layers]]\nmodels = ["fake:p1"]\n[aggregator]\nmodel = "fake:agg"\n',
            )
        ),
    )
    assert done.exit_code == 0, done.stderr
    assert jobs(upstream, "p1") == [3, 2]  # the two it left unrun, once more
    notes = [n for r in output(out).values() for n in r["batch_api"]["notes"]]
    assert len(notes) == 2 and all("resubmitted" in n and "expired" in n for n in notes)
    assert upstream.calls == []


def test_realtime_fallback_sends_an_expired_jobs_unrun_requests_real_time(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.batches.expire(1, jobs=1)
    out = tmp_path / "out.jsonl"
    done = run(
        str(prompts(tmp_path, 3)),
        "-o",
        str(out),
        "--realtime-fallback",
        "-r",
        str(
            recipe(
                tmp_path,
                upstream,
                '[[layers]]\nmodels = ["fake:p1"]\n[aggregator]\nmodel = "fake:agg"\n',
            )
        ),
    )
    assert done.exit_code == 0, done.stderr
    assert jobs(upstream, "p1") == [3]
    assert len(upstream.requests_for("p1")) == 2 and upstream.requests_for("agg") == []
    notes = [n for r in output(out).values() for n in r["batch_api"]["notes"]]
    assert notes == ["sent real-time: its batch job ended batch_expired"] * 2


def test_a_provider_without_batch_api_runs_real_time_inside_the_barrier(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    body = (
        ONE_LAYER.replace('"fake:p2"', '"rt:p2"')
        + f'[providers.rt]\nbase_url = "{upstream.base_url}"\n'
    )
    out = tmp_path / "out.jsonl"
    done = run(
        str(prompts(tmp_path, 3)), "-o", str(out), "-r", str(recipe(tmp_path, upstream, body))
    )
    assert done.exit_code == 0, done.stderr
    assert (
        jobs(upstream, "p1") == [3] and jobs(upstream, "agg") == [3] and jobs(upstream, "p2") == []
    )
    assert len(upstream.requests_for("p2")) == 3 and len(upstream.requests) == 3
    (aggregated,) = lines_of(upstream, "agg")
    assert all("answer from p2" in b["messages"][0]["content"] for b in aggregated)


def test_a_strategy_with_more_calls_runs_them_as_further_rounds(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.script(
        "agg", Reply('{"agreements": [], "contradictions": [], "unique": []}'), Reply("the answer")
    )
    body = ONE_LAYER + 'strategy = "analysis"\n'
    out = tmp_path / "out.jsonl"
    done = run(
        str(prompts(tmp_path, 2)), "-o", str(out), "-r", str(recipe(tmp_path, upstream, body))
    )
    assert done.exit_code == 0, done.stderr
    assert jobs(upstream, "agg") == [2, 2]  # the analyses, then the answers that read them


def test_the_budget_refuses_a_layer_before_any_upload(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    price = "price = { input = 100, output = 100 }"
    body = TWO_LAYERS.replace(
        '"fake:p1", "fake:p2"',
        f'{{ model = "fake:p1", {price} }}, {{ model = "fake:p2", {price} }}',
        1,
    )
    body = body.replace('model = "fake:agg"', f'model = "fake:agg"\n{price}')
    source, out, path = (
        prompts(tmp_path, 3),
        tmp_path / "out.jsonl",
        recipe(tmp_path, upstream, body),
    )
    # Layer 1 could cost 6 calls x ~102 tokens x $100/M x 0.5 (the batch discount) = ~$0.03.
    done = run(
        str(source), "-o", str(out), "--budget", "0.02", "--max-tokens", "100", "-r", str(path)
    )
    assert done.exit_code == 1
    assert "budget" in done.stderr and "layer 1 (6 batch requests)" in done.stderr
    assert upstream.batches.uploads == 0 and upstream.calls == []
    done = run(str(source), "-o", str(out), "--budget", "1", "--max-tokens", "100", "-r", str(path))
    assert done.exit_code == 0, done.stderr
    assert "layer 1: $0.00" in done.stderr  # priced at half the recipe's price


def test_a_provider_without_the_api_gets_one_line(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.batches.available = False
    done = run(
        str(prompts(tmp_path, 2)),
        "-o",
        str(tmp_path / "o.jsonl"),
        "-r",
        str(recipe(tmp_path, upstream, ONE_LAYER)),
    )
    assert done.exit_code == 2
    assert "answers 404" in done.stderr and "no Batch API" in done.stderr
    assert upstream.calls == []


def test_a_job_that_fails_validation_names_its_requests(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.batches.refuse("p2", "p2 is not available for batch")
    done = run(
        str(prompts(tmp_path, 2)),
        "-o",
        str(tmp_path / "o.jsonl"),
        "-r",
        str(recipe(tmp_path, upstream, ONE_LAYER)),
    )
    assert done.exit_code == 1
    assert 'request 1 (prompt "q0", layer 1): p2 is not available for batch' in done.stderr


def test_an_input_line_that_is_not_json_is_named_by_number(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "prompt": "a"}\n{"id": 2, "prompt": \n')
    done = run(
        str(source),
        "-o",
        str(tmp_path / "o.jsonl"),
        "-r",
        str(recipe(tmp_path, upstream, ONE_LAYER)),
    )
    assert done.exit_code == 2 and "in.jsonl:2: not valid JSON" in done.stderr
    assert upstream.batches.uploads == 0


def moa(*args: str) -> list[str]:
    return [sys.executable, "-m", "moa.cli.app", *args]


def _killed_mid_layer(upstream: FakeUpstream, tmp_path: Path) -> tuple[list[str], Path]:
    """A real `moa batch --batch-api` is SIGKILLed once its layer-1 jobs exist."""
    upstream.batches.delay_s = 3600.0  # the jobs run until the test says
    out = tmp_path / "out.jsonl"
    args = [
        "batch",
        str(prompts(tmp_path, 4)),
        "-o",
        str(out),
        "-r",
        str(recipe(tmp_path, upstream, ONE_LAYER)),
        "--batch-api",
        "--poll-every",
        "0.02",
        "-q",
    ]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    process = subprocess.Popen(moa(*args), env=env, stderr=subprocess.PIPE)
    try:
        assert upstream.batches.wait_for_jobs(2, timeout=60), "the layer's jobs were never made"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return args, out


def test_killed_then_rerun_polls_the_same_jobs_and_submits_nothing_twice(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    args, out = _killed_mid_layer(upstream, tmp_path)
    assert not out.exists() or out.read_text() == ""
    upstream.batches.finish()
    upstream.batches.delay_s = 0.0
    resumed = subprocess.run(moa(*args), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert jobs(upstream, "p1") == [4] and jobs(upstream, "p2") == [4]  # no second job
    assert jobs(upstream, "agg") == [4]
    assert sorted(output(out)) == ["q0", "q1", "q2", "q3"] and upstream.calls == []


def test_cancel_cancels_a_runs_jobs_still_running(upstream: FakeUpstream, tmp_path: Path) -> None:
    _, out = _killed_mid_layer(upstream, tmp_path)
    done = CliRunner().invoke(app, ["batch-cancel", str(out)])
    assert done.exit_code == 0, done.stderr
    assert "2 job(s) cancelled" in done.stderr
    assert {j.status for j in upstream.batches.jobs.values()} == {"cancelled"}
    state = json.loads(state_path(out).read_text())
    assert {j["status"] for j in state["jobs"]} == {"cancelled"}


def test_ctrl_c_says_the_jobs_go_on_and_how_to_cancel_them(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Only the process stops: the provider keeps running (and billing) its jobs."""
    upstream.batches.delay_s = 3600.0
    out = tmp_path / "out.jsonl"
    args = ["batch", str(prompts(tmp_path, 2)), "-o", str(out), "-q", "--poll-every", "0.02"]
    args += ["-r", str(recipe(tmp_path, upstream, ONE_LAYER)), "--batch-api"]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    process = subprocess.Popen(moa(*args), env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert upstream.batches.wait_for_jobs(2, timeout=60), "the layer's jobs were never made"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "go on at the provider" in stderr and f"moa batch cancel {out}" in stderr
    assert not any(j.cancelled for j in upstream.batches.jobs.values())


def test_batch_api_refuses_a_queue_rather_than_ignoring_it(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    done = run(
        str(prompts(tmp_path, 2)),
        "-o",
        str(tmp_path / "o.jsonl"),
        "--queue",
        "redis://127.0.0.1:1/0",
        "-r",
        str(recipe(tmp_path, upstream, ONE_LAYER)),
    )
    assert done.exit_code == 2 and "does not go with --queue" in done.stderr
    assert upstream.batches.uploads == 0
