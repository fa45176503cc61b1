"""A run that lost members it asked for says so: in the trace, to the aggregator, on every
surface (the `moa` extension, X-MoA-Degraded, moa ask's stderr, batch lines), and refuses to
answer at all under on_degraded = "fail"."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from moa import Aggregator, MoA, ProposalLayer, Registry, RetryPolicy
from moa.errors import DegradedRunError
from moa.testing import FakeUpstream, Reply


def aggregator_system(upstream: FakeUpstream) -> str:
    return str(upstream.requests_for("agg")[0]["messages"][0]["content"])


def test_a_failed_member_degrades_the_run_and_the_aggregator_is_told(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("bad", Reply(status=400))
    result = make_moa([["good", "bad", "fine"]]).run("q")
    degradation = result.degradation
    assert degradation.degraded
    assert (degradation.answered, degradation.asked) == (2, 3)
    assert [c.missing for c in degradation.lost] == ["failed"]
    assert "2 of the 3 requested responses are below" in aggregator_system(upstream)
    assert result.to_dict()["calls"][1]["missing"] == "failed"


def test_a_timed_out_member_is_missing_by_timeout(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("slow", Reply("late", delay_s=5))
    result = make_moa([["slow", "quick"]], timeout_s=0.5).run("q")
    assert result.degradation.degraded
    assert [c.missing for c in result.degradation.lost] == ["timeout"]
    assert "1 of the 2 requested responses are below" in aggregator_system(upstream)


def test_a_member_cut_by_the_quorum_deadline_degrades_the_run(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("slow", Reply("late", delay_s=5))
    result = make_moa([["quick", "slow"]], min_proposals=1, deadline_s=0.2).run("q")
    (lost,) = result.degradation.lost
    assert lost.model == "fake:slow" and lost.missing not in (None, "failed", "timeout")
    assert "1 of the 2 requested responses are below" in aggregator_system(upstream)


def test_a_full_panel_is_not_degraded_and_the_prompt_has_no_count(
    upstream: FakeUpstream, make_moa
) -> None:
    result = make_moa([["a", "b"]]).run("q")
    assert not result.degradation.degraded
    assert (result.degradation.answered, result.degradation.asked) == (2, 2)
    assert "requested responses" not in aggregator_system(upstream)


def test_on_degraded_fail_refuses_the_answer_with_the_partial_trace(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("bad", Reply(status=500))
    moa = MoA(
        ProposalLayer("fake:good", "fake:bad"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
        on_degraded="fail",
    )
    with pytest.raises(DegradedRunError) as info:
        moa.run("q")
    partial = info.value.result
    assert [c.model for c in partial.proposals()] == ["fake:good", "fake:bad"]
    assert partial.degradation.degraded


DEGRADED_RECIPE = """
name = "test-moa"
[retry]
max_attempts = 1
[[layers]]
models = ["fake:a", "fake:b"]
[aggregator]
model = "fake:agg"
"""


def test_the_server_says_so_in_the_extension_and_the_header(
    upstream: FakeUpstream, serve_moa
) -> None:
    upstream.script("b", Reply(status=500))
    server = serve_moa(DEGRADED_RECIPE)
    body = {"model": "test-moa", "messages": [{"role": "user", "content": "q"}]}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    moa = response.json()["moa"]
    assert (moa["degraded"], moa["answered"], moa["asked"]) == (True, 1, 2)
    assert response.headers["X-MoA-Degraded"] == "true; answered=1; asked=2"


def test_a_full_panel_says_not_degraded_on_the_server(upstream: FakeUpstream, serve_moa) -> None:
    server = serve_moa(DEGRADED_RECIPE)
    body = {"model": "test-moa", "messages": [{"role": "user", "content": "q"}]}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.json()["moa"]["degraded"] is False
    assert response.headers["X-MoA-Degraded"] == "false"


def test_a_stream_carries_it_in_its_last_moa_extension(upstream: FakeUpstream, serve_moa) -> None:
    upstream.script("b", Reply(status=500))
    server = serve_moa(DEGRADED_RECIPE)
    body = {"model": "test-moa", "stream": True, "messages": [{"role": "user", "content": "q"}]}
    extensions = []
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, timeout=30
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[len("data: ") :])
                if "moa" in chunk:
                    extensions.append(chunk["moa"])
    assert extensions and extensions[-1]["degraded"] is True
    assert (extensions[-1]["answered"], extensions[-1]["asked"]) == (1, 2)


def test_moa_ask_says_degraded_on_stderr(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("b", Reply(status=500))
    path = recipe_file(DEGRADED_RECIPE)
    done = subprocess.run(
        [sys.executable, "-m", "moa", "ask", "-r", str(path), "q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "degraded: 1 of 2 answered" in done.stderr
    assert "fake:b (failed)" in done.stderr


def test_a_batch_line_is_marked_and_refused_under_fail(
    upstream: FakeUpstream, recipe_file, tmp_path
) -> None:
    upstream.script("b", Reply(status=500))
    prompts = tmp_path / "in.jsonl"
    prompts.write_text('{"id": "1", "prompt": "q"}\n')
    for policy, degraded_line in (("answer", True), ("fail", False)):
        body = f'on_degraded = "{policy}"\n' + DEGRADED_RECIPE
        path = recipe_file(body, name=f"{policy}.toml")
        out = tmp_path / f"{policy}.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "moa", "batch", str(prompts), "-o", str(out), "-r", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        if degraded_line:
            (line,) = lines
            assert line["degraded"] is True and line["answered"] == 1 and line["asked"] == 2
        else:  # refused: no row for training data, and a rerun tries it again
            assert lines == [], lines
            assert "degraded" in done.stderr, done.stderr
