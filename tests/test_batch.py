"""`moa batch`: answers with traces, resume, crash safety (a real SIGKILL), the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from moa.batch.jsonl import AppendLog
from moa.cli.app import app
from moa.testing import FakeUpstream, Reply

RECIPE = '[[layers]]\nmodels = ["fake:p1", "fake:p2"]\n[aggregator]\nmodel = "fake:agg"\n'
SEEDED = (
    '[defaults]\ntemperature = 0\n[[layers]]\nmodels = ["fake:p1", "fake:p2"]\n'
    '[aggregator]\nmodel = "fake:agg"\n'
)


def moa_cmd(*args: str, tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "moa.cli.app", *args]


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["MOA_CACHE"] = str(tmp_path / "cache.sqlite")
    return env


def run_moa(*args: str, tmp_path: Path) -> Result:
    """In process, for speed; the SIGKILL test below runs a real subprocess."""
    return CliRunner().invoke(app, list(args), env={"MOA_CACHE": str(tmp_path / "cache.sqlite")})


def write_input(path: Path, n: int) -> Path:
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"prompt {i}"}) + "\n" for i in range(n))
    )
    return path


def read_output(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]


def prompts_asked(upstream: FakeUpstream, model: str) -> list[str]:
    return [r["messages"][-1]["content"] for r in upstream.requests_for(model)]


def test_batch_writes_one_line_per_prompt_with_answer_and_trace(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    upstream.script("agg", Reply(text=lambda body: "final: " + body["messages"][-1]["content"]))
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": 1, "prompt": "one"}\n'
        '{"id": "two", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "hello"}, {"role": "user", "content": "two"}]}\n'
    )
    out = tmp_path / "out.jsonl"
    done = run_moa(
        "batch", str(source), "-o", str(out), "-r", str(recipe_file(RECIPE)), tmp_path=tmp_path
    )
    assert done.exit_code == 0, done.stderr
    rows = {json.dumps(r["id"]): r for r in read_output(out)}
    assert set(rows) == {"1", '"two"'}
    assert rows["1"]["answer"] == "final: one" and rows['"two"']["answer"] == "final: two"
    trace = rows["1"]["trace"]
    assert [(c["model"], c["role"]) for c in trace["calls"]] == [
        ("fake:p1", "proposer"),
        ("fake:p2", "proposer"),
        ("fake:agg", "aggregator"),
    ]
    assert trace["usage"]["total_tokens"] > 0
    assert "2 done, 0 already done" in done.stderr


def test_a_rerun_skips_finished_ids(upstream: FakeUpstream, recipe_file, tmp_path: Path) -> None:
    source, out = write_input(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    recipe = str(recipe_file(RECIPE))
    assert (
        run_moa("batch", str(source), "-o", str(out), "-r", recipe, tmp_path=tmp_path).exit_code
        == 0
    )
    again = run_moa("batch", str(source), "-o", str(out), "-r", recipe, tmp_path=tmp_path)
    assert again.exit_code == 0, again.stderr
    assert "0 done, 3 already done" in again.stderr
    assert len(read_output(out)) == 3
    assert len(upstream.requests_for("p1")) == 3


def test_killed_mid_batch_then_resumed_every_id_exactly_once(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    """A real `moa batch` process is SIGKILLed while answers are in flight; the output is
    then given a torn last line as a kill inside write(2) would leave it; the same command
    resumes: every id appears once, every line is valid JSON, finished ids are not re-asked."""
    answered = threading.Event()
    count = 0
    lock = threading.Lock()

    def agg_text(body: dict) -> str:
        nonlocal count
        with lock:
            count += 1
            if count >= 5:
                answered.set()
        return "final for " + body["messages"][-1]["content"]

    # The delay keeps several runs in flight when the kill lands.
    upstream.script("agg", Reply(text=agg_text, delay_s=0.05))
    n = 24
    source, out = write_input(tmp_path / "in.jsonl", n), tmp_path / "out.jsonl"
    args = ["batch", str(source), "-o", str(out), "-r", str(recipe_file(RECIPE)), "-c", "3", "-q"]
    process = subprocess.Popen(
        moa_cmd(*args, tmp_path=tmp_path), env=env_for(tmp_path), stderr=subprocess.PIPE
    )
    try:
        assert answered.wait(timeout=60), "the batch never got going"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    first = read_output(out)
    assert 0 < len(first) < n, "the kill should land mid-batch"
    finished = {r["id"] for r in first}
    with out.open("ab") as handle:  # what a kill in the middle of a write leaves behind
        handle.write(b'{"id": "q23", "answer": "torn')

    resumed = subprocess.run(
        moa_cmd(*args, tmp_path=tmp_path),
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    rows = read_output(out)  # every line parses: the torn tail was cut, not kept
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(f"q{i}" for i in range(n)) and len(ids) == len(set(ids))
    assert all(r["answer"] == f"final for prompt {r['id'][1:]}" for r in rows)
    asked = prompts_asked(upstream, "p1")
    for item_id in finished:
        assert asked.count(f"prompt {item_id[1:]}") == 1, item_id


def test_a_torn_last_line_is_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": 1, "answer": "a"}\n{"id": 2, "ans')
    with AppendLog(path) as log:
        assert 1 in log and 2 not in log
        assert log.truncated_bytes == len(b'{"id": 2, "ans')
        log.append({"id": 2, "answer": "b"})
    assert path.read_bytes() == b'{"id": 1, "answer": "a"}\n{"id": 2, "answer": "b"}\n'


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    import pytest

    from moa.errors import ConfigError

    path = tmp_path / "out.jsonl"
    with AppendLog(path), pytest.raises(ConfigError, match="another process"), AppendLog(path):
        pass


def test_failed_prompts_are_not_written_and_a_rerun_retries_them(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    upstream.script(
        "agg",
        Reply(text=lambda body: "ok"),
    )
    # Both proposers fail on their first request only: q0 fails, the others go on.
    for model in ("p1", "p2"):
        upstream.script(model, Reply(status=400), Reply("fine"))
    source, out = write_input(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    recipe = str(recipe_file(RECIPE))
    failed = run_moa(
        "batch", str(source), "-o", str(out), "-r", recipe, "-c", "1", tmp_path=tmp_path
    )
    assert failed.exit_code == 1
    assert "1 failed" in failed.stderr and "rerun the same command" in failed.stderr
    assert sorted(r["id"] for r in read_output(out)) == ["q1", "q2"]
    retried = run_moa("batch", str(source), "-o", str(out), "-r", recipe, tmp_path=tmp_path)
    assert retried.exit_code == 0, retried.stderr
    assert sorted(r["id"] for r in read_output(out)) == ["q0", "q1", "q2"]


def test_bad_input_is_a_usage_error(recipe_file, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n')
    done = run_moa(
        "batch",
        str(source),
        "-o",
        str(tmp_path / "o.jsonl"),
        "-r",
        str(recipe_file(RECIPE)),
        tmp_path=tmp_path,
    )
    assert done.exit_code == 2 and "duplicate id 1" in done.stderr
    source.write_text('{"id": 1}\n')
    done = run_moa(
        "batch",
        str(source),
        "-o",
        str(tmp_path / "o.jsonl"),
        "-r",
        str(recipe_file(RECIPE)),
        tmp_path=tmp_path,
    )
    assert done.exit_code == 2 and "in.jsonl:1" in done.stderr


def test_the_cache_answers_a_second_batch_and_no_cache_bypasses_it(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", 2)
    recipe = str(recipe_file(SEEDED))
    cache = str(tmp_path / "c.sqlite")
    for name in ("a.jsonl", "b.jsonl"):
        done = run_moa(
            "batch",
            str(source),
            "-o",
            str(tmp_path / name),
            "-r",
            recipe,
            "--cache",
            cache,
            tmp_path=tmp_path,
        )
        assert done.exit_code == 0, done.stderr
    assert len(upstream.requests_for("p1")) == 2 and len(upstream.requests_for("agg")) == 2
    assert "cache 6 hits / 0 misses" in done.stderr
    done = run_moa(
        "batch",
        str(source),
        "-o",
        str(tmp_path / "c.jsonl"),
        "-r",
        recipe,
        "--no-cache",
        tmp_path=tmp_path,
    )
    assert done.exit_code == 0 and "cache off" in done.stderr
    assert len(upstream.requests_for("p1")) == 4


def test_rerunning_with_another_aggregator_reuses_the_seeded_proposals(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", 3)
    recipe = str(recipe_file(SEEDED))
    first = run_moa(
        "batch", str(source), "-o", str(tmp_path / "a.jsonl"), "-r", recipe, tmp_path=tmp_path
    )
    assert first.exit_code == 0, first.output
    other = run_moa(
        "batch",
        str(source),
        "-o",
        str(tmp_path / "b.jsonl"),
        "-r",
        recipe,
        "-a",
        "fake:agg2",
        tmp_path=tmp_path,
    )
    assert other.exit_code == 0, other.output
    assert len(upstream.requests_for("p1")) == 3 and len(upstream.requests_for("p2")) == 3
    assert len(upstream.requests_for("agg2")) == 3
    rows = read_output(tmp_path / "b.jsonl")
    assert all(r["answer"] == "answer from agg2" for r in rows)
    proposals = [c for r in rows for c in r["trace"]["calls"] if c["role"] == "proposer"]
    assert {c["attempts"] for c in proposals} == {0}  # served from the cache
