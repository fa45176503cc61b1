"""The `moa` command as a user runs it: a real subprocess, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import wait_until
from moa.testing import FakeUpstream, Reply


def moa(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "moa.cli.app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,
    )


RECIPE = '[[layers]]\nmodels = ["fake:a", "fake:b"]\n[aggregator]\nmodel = "fake:agg"\n'


def test_ask_streams_the_answer_to_stdout_and_progress_to_stderr(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("agg", Reply("Paris is the capital."))
    done = moa("ask", "Capital of France?", "-r", str(recipe_file(RECIPE)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Paris is the capital."
    assert "fake:a" in done.stderr and "fake:b" in done.stderr and "aggregating" in done.stderr
    # Progress shows finished proposals: they are asked for whole, only the answer streams.
    assert [c.streamed for c in upstream.calls] == [False, False, True]


def test_ask_is_the_default_verb_and_reads_stdin(upstream: FakeUpstream, recipe_file) -> None:
    done = moa("-r", str(recipe_file(RECIPE)), "-", stdin="from stdin")
    assert done.returncode == 0, done.stderr
    assert upstream.requests_for("a")[0]["messages"][-1]["content"] == "from stdin"


def test_json_prints_the_result_with_its_trace(upstream: FakeUpstream, recipe_file) -> None:
    done = moa("ask", "q", "--json", "-r", str(recipe_file(RECIPE)))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["text"] == "answer from agg"
    assert [(c["layer"], c["model"], c["role"]) for c in data["calls"]] == [
        (1, "fake:a", "proposer"),
        (1, "fake:b", "proposer"),
        (2, "fake:agg", "aggregator"),
    ]
    assert data["usage"]["total_tokens"] > 0


def test_json_on_a_failed_aggregator_prints_the_partial_trace_and_exits_1(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("a", Reply("PROPOSAL-A"))
    upstream.script("agg", Reply(status=400))
    done = moa("ask", "q", "--json", "-r", str(recipe_file(RECIPE)))
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert [(c["model"], c["status"]) for c in data["calls"]] == [
        ("fake:a", "ok"),
        ("fake:b", "ok"),
        ("fake:agg", "failed"),
    ]
    assert data["calls"][0]["output"] == "PROPOSAL-A" and data["text"] == ""
    assert data["error"]["type"] == "aggregator_failed"
    assert "the aggregator failed" in data["error"]["message"]
    assert "the aggregator failed" in done.stderr  # the one error line stays on stderr


def test_json_on_a_failed_layer_prints_every_failed_call_and_exits_1(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("a", Reply(status=400))
    upstream.script("b", Reply(status=400))
    done = moa("ask", "q", "--json", "-r", str(recipe_file(RECIPE)))
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert [(c["model"], c["status"]) for c in data["calls"]] == [
        ("fake:a", "failed"),
        ("fake:b", "failed"),
    ]
    assert all(c["error"] for c in data["calls"])
    assert data["error"]["type"] == "layer_failed"
    assert upstream.requests_for("agg") == []


def test_options_before_the_prompt_reach_the_default_verb(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    """`-r serve` names a recipe file called `serve`, not the `serve` verb."""
    recipe_file(RECIPE, name="serve")
    quiet = moa("-q", "-r", "serve", "hi", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "answer from agg" and "proposing" not in quiet.stderr

    as_json = moa("-r", "serve", "--json", "--max-tokens", "7", "hi", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["text"] == "answer from agg"
    assert upstream.requests_for("agg")[-1]["max_tokens"] == 7

    after = moa("hi", "-q", "-r", "serve", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert [r["messages"][-1]["content"] for r in upstream.requests_for("a")] == ["hi"] * 3


def test_an_empty_prompt_says_how_to_pass_one() -> None:
    done = moa("ask", "   ")
    assert done.returncode == 2
    assert "prompt is empty" in done.stderr and "'-' to read it from stdin" in done.stderr


def test_overrides_replace_proposers_aggregator_layers_and_sampling(
    upstream: FakeUpstream, recipe_file
) -> None:
    done = moa(
        "ask",
        "q",
        "-r",
        str(recipe_file(RECIPE)),
        "--proposer",
        "fake:x",
        "--proposer",
        "fake:y",
        "--aggregator",
        "fake:z",
        "--layers",
        "3",
        "--temperature",
        "0.1",
        "--max-tokens",
        "64",
    )
    assert done.returncode == 0, done.stderr
    assert len(upstream.requests_for("x")) == 2 and len(upstream.requests_for("y")) == 2
    (final,) = upstream.requests_for("z")
    assert (final["temperature"], final["max_tokens"]) == (0.1, 64)
    assert upstream.requests_for("a") == []


def test_show_proposals_prints_them_on_stderr(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("a", Reply("PROPOSAL-FROM-A"))
    done = moa("ask", "q", "--show-proposals", "-r", str(recipe_file(RECIPE)))
    assert "PROPOSAL-FROM-A" in done.stderr and "PROPOSAL-FROM-A" not in done.stdout


def test_configuration_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    cases = [
        (("ask", "q", "-r", "together-classic"), "TOGETHER_API_KEY"),
        (("ask", "q", "-r", "no-such-recipe"), "unknown recipe"),
        (("ask", "", "-r", "local"), "prompt is empty"),
        (("ask", "q", "--aggregator", "zzz:m"), "unknown provider 'zzz'"),
        (("recipes", "show", "nope"), "unknown recipe"),
    ]
    for args, expected in cases:
        done = moa(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_failed_run_exits_1(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("a", Reply(status=400))
    upstream.script("b", Reply(status=400))
    done = moa("ask", "q", "-r", str(recipe_file(RECIPE)))
    assert done.returncode == 1
    assert "every proposer of layer 1 failed" in done.stderr


def test_recipes_lists_and_shows_builtins() -> None:
    listed = moa("recipes")
    assert listed.returncode == 0
    for name in ("local", "together-moa", "together-moa-lite", "together-classic"):
        assert name in listed.stdout
    shown = moa("recipes", "show", "together-classic")
    assert 'model = "together:meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"' in shown.stdout


def test_ctrl_c_cancels_in_flight_calls_and_exits_cleanly(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("a", Reply("slow", delay_s=30))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moa.cli.app", "ask", "q", "-r", str(recipe_file(RECIPE))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    with ThreadPoolExecutor(1) as reader:
        line = reader.submit(proc.stderr.readline)
        try:
            first_line = line.result(timeout=30)
        except TimeoutError:
            proc.kill()  # which ends the readline
            raise AssertionError("`moa ask` printed nothing on stderr within 30 s") from None
    assert "layer 1" in first_line  # the calls are in flight
    wait_until(lambda: len(upstream.requests_for("a")) >= 1, what="the request to reach a")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "cancelled" in stderr and "Traceback" not in stderr


def test_chat_keeps_the_history_across_turns(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("agg", Reply("first reply"), Reply("second reply"))
    done = moa("chat", "-r", str(recipe_file(RECIPE)), stdin="hello\nand then?\n/exit\n")
    assert done.returncode == 0, done.stderr
    assert "first reply" in done.stdout and "second reply" in done.stdout
    assert done.stderr.count("layer 1: proposing") == 2  # progress for every turn
    assert [c.streamed for c in upstream.calls if c.model != "agg"] == [False] * 4
    last = upstream.requests_for("a")[-1]["messages"]
    assert last == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "first reply"},
        {"role": "user", "content": "and then?"},
    ]


def test_chat_survives_a_failed_turn(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("agg", Reply(status=400), Reply("recovered"))
    done = moa("chat", "-r", str(recipe_file(RECIPE)), stdin="one\ntwo\n")
    assert done.returncode == 0
    assert "aggregator failed" in done.stderr and "recovered" in done.stdout
    # the failed turn is not in the history
    assert upstream.requests_for("a")[-1]["messages"] == [{"role": "user", "content": "two"}]


def test_overriding_models_drops_the_recipes_per_model_settings(
    upstream: FakeUpstream, recipe_file
) -> None:
    path = recipe_file(
        '[defaults]\ntemperature = 0.7\n[[layers]]\nmodels = [{model = "fake:a", max_tokens = 9}]\n'
        '[aggregator]\nmodel = "fake:agg"\nmax_tokens = 11\nseed = 3\n'
    )
    done = moa("ask", "q", "-r", str(path), "-p", "fake:x", "-a", "fake:z")
    assert done.returncode == 0, done.stderr
    (proposal,), (final,) = upstream.requests_for("x"), upstream.requests_for("z")
    assert "max_tokens" not in proposal and "max_tokens" not in final and "seed" not in final
    assert proposal["temperature"] == final["temperature"] == 0.7  # recipe-wide defaults stay


def test_ask_with_tools_prints_the_aggregators_calls_as_json(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    upstream.script("agg", Reply("", tool_calls=[{"name": "get_weather", "arguments": "{}"}]))
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "get_weather"}}]))
    recipe = RECIPE.replace('"fake:agg"', '"smart:agg"') + (
        f'[providers.smart]\nbase_url = "{upstream.base_url}"\ntools = true\n'
    )
    done = moa("ask", "Weather?", "-q", "--tools", str(tools), "-r", str(recipe_file(recipe)))
    assert done.returncode == 0, done.stderr
    (call,) = json.loads(done.stdout)
    assert call["function"] == {"name": "get_weather", "arguments": "{}"}
    assert upstream.requests_for("agg")[0]["tools"][0]["function"]["name"] == "get_weather"


def test_ask_with_a_schema_the_aggregator_cannot_follow_is_a_usage_error(
    upstream: FakeUpstream, recipe_file
) -> None:
    done = moa("ask", "q", "--schema", '{"type": "object"}', "-r", str(recipe_file(RECIPE)))
    assert done.returncode == 2
    assert "response_format" in done.stderr and "json_schema" in done.stderr
    assert upstream.requests == []
