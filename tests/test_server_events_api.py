"""`POST /v1/moa/runs` answers with one JSON event per engine event, and accepts an edited
recipe (`moa_recipe`) checked against what the server serves."""

from __future__ import annotations

import json

import httpx
import pytest

from moa.testing import FakeUpstream, Reply

MODEL = "test-moa"
ASK = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France?"}]}


def run_events(server, body: dict, headers: dict | None = None) -> list[dict]:
    with httpx.stream(
        "POST", f"{server.url}/v1/moa/runs", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(ln[6:]) for ln in response.iter_lines() if ln.startswith("data: ")]


def test_a_run_is_told_event_by_event_and_ends_with_the_whole_trace(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("a", Reply("proposal A", usage=(10, 2)))
    upstream.script("b", Reply("proposal B", usage=(11, 2)))
    upstream.script("agg", Reply("Paris is the capital", usage=(40, 4)))
    events = run_events(moa_server, ASK)
    types = [e["type"] for e in events]
    assert types[:3] == ["layer.started", "proposal.started", "proposal.started"]
    models = ["fake:a", "fake:b"]
    assert events[0] == {"type": "layer.started", "layer": 1, "models": models, "labels": models}
    finished = types.index("aggregator.started")
    assert sorted(types[3:finished]) == sorted(
        ["proposal.finished"] * 2 + ["proposal.delta"] * types[3:finished].count("proposal.delta")
    )
    assert types[finished + 1 : -1] == ["answer.delta"] * (len(types) - finished - 2)
    assert types[-1] == "done"
    a = next(e for e in events if e["type"] == "proposal.finished" and e["model"] == "fake:a")
    assert (a["layer"], a["index"], a["call"]["output"], a["call"]["output_tokens"]) == (
        1,
        0,
        "proposal A",
        2,
    )
    assert "".join(e["text"] for e in events if e["type"] == "answer.delta") == (
        "Paris is the capital"
    )
    done = events[-1]
    assert done["trace"]["text"] == "Paris is the capital"
    assert done["usage"] == {"input_tokens": 61, "output_tokens": 8, "total_tokens": 69}
    assert len(done["trace"]["calls"]) == 3


def test_proposal_deltas_add_up_to_each_proposal(upstream: FakeUpstream, moa_server) -> None:
    # Needs the engine to stream proposals (issue 11 item 1); until then there are no deltas.
    upstream.script("a", Reply("one two three"))
    events = run_events(moa_server, ASK)
    deltas = [e for e in events if e["type"] == "proposal.delta" and e["model"] == "fake:a"]
    assert deltas, "the engine emits ProposalDelta for every proposer"
    finished = next(e for e in events if e["type"] == "proposal.finished" and e["index"] == 0)
    assert events.index(deltas[-1]) < events.index(finished)
    assert "".join(d["text"] for d in deltas) == "one two three"


def test_a_failed_proposer_is_an_event_and_the_run_goes_on(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("b", Reply(status=500))
    events = run_events(moa_server, ASK)
    failed = [e for e in events if e["type"] == "proposal.failed"]
    assert [(e["model"], e["call"]["status"]) for e in failed] == [("fake:b", "failed")]
    assert "500" in failed[0]["call"]["error"]
    assert events[-1]["type"] == "done"


def test_a_run_that_fails_ends_with_an_error_event_and_the_partial_trace(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("a", Reply(status=500))
    upstream.script("b", Reply(status=500))
    events = run_events(moa_server, ASK)
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "layer_failed"
    assert events[-1]["status"] == 502
    assert [c["status"] for c in events[-1]["trace"]["calls"]] == ["failed", "failed"]


def test_refusals_before_the_run_are_http_errors(moa_server) -> None:
    response = httpx.post(f"{moa_server.url}/v1/moa/runs", json={**ASK, "model": "nope"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_the_served_recipes_are_listed_without_their_provider_settings(moa_server) -> None:
    listing = httpx.get(f"{moa_server.url}/v1/moa/recipes").json()
    assert [r["id"] for r in listing["data"]] == [MODEL]
    recipe = listing["data"][0]["recipe"]
    assert "providers" not in recipe
    assert recipe["layers"][0]["models"] == ["fake:a", "fake:b"]
    assert listing["models"] == ["fake:a", "fake:agg", "fake:b"]
    assert "synthesize" in listing["strategies"]


def test_an_edited_recipe_runs_in_place_of_the_served_one(
    upstream: FakeUpstream, moa_server
) -> None:
    edited = {
        "layers": [{"models": ["fake:x", "fake:y", "fake:z"]}],
        "aggregator": {"model": "fake:b"},
    }
    events = run_events(moa_server, {**ASK, "moa_recipe": edited})
    assert events[0]["models"] == ["fake:x", "fake:y", "fake:z"]
    assert events[-1]["trace"]["aggregator_model"] == "fake:b"
    assert {r["model"] for r in upstream.requests} == {"x", "y", "z", "b"}


def test_one_model_alone_is_a_recipe_without_layers(upstream: FakeUpstream, moa_server) -> None:
    events = run_events(moa_server, {**ASK, "moa_recipe": {"aggregator": {"model": "fake:a"}}})
    assert events[0]["type"] == "aggregator.started"
    assert events[-1]["trace"]["text"] == "answer from a"


def test_an_edited_recipe_may_not_reach_other_providers_or_declare_any(moa_server) -> None:
    def refusal(recipe: dict) -> str:
        response = httpx.post(f"{moa_server.url}/v1/moa/runs", json={**ASK, "moa_recipe": recipe})
        assert response.status_code == 400
        return response.json()["error"]["message"]

    assert "not from a provider this server serves" in refusal(
        {"aggregator": {"model": "openai:gpt-4o"}}
    )
    declared = {"aggregator": {"model": "fake:a"}, "providers": {"evil": {"base_url": "http://x"}}}
    assert "cannot set providers" in refusal(declared)
    assert "unknown key" in refusal({"aggregator": {"model": "fake:a", "colour": "red"}})
    unknown = {"aggregator": {"model": "fake:a", "strategy": "vote-by-dice"}}
    assert "unknown strategy" in refusal(unknown)
    huge = {"layers": [{"models": ["fake:a"] * 8, "repeat": 5}], "aggregator": {"model": "fake:a"}}
    assert "too large" in refusal(huge)


def test_the_api_keys_protect_the_events_api(serve_moa) -> None:
    server = serve_moa(api_keys=["sk-test-key-123"])
    assert httpx.post(f"{server.url}/v1/moa/runs", json=ASK).status_code == 401
    assert httpx.get(f"{server.url}/v1/moa/recipes").status_code == 401
    events = run_events(server, ASK, {"Authorization": "Bearer sk-test-key-123"})
    assert events[-1]["type"] == "done"


PRICED = """
name = "test-moa"
[retry]
max_attempts = 1
[[layers]]
models = [{model = "fake:a", price = {input = 1.0, output = 2.0}}, {model = "fake:b", price = {input = 1.0, output = 2.0}}]
[aggregator]
model = "fake:agg"
price = {input = 1.0, output = 2.0}
"""


def test_done_carries_the_cost_when_every_call_is_priced(upstream: FakeUpstream, serve_moa) -> None:
    upstream.script("a", Reply("proposal A", usage=(10, 2)))
    upstream.script("b", Reply("proposal B", usage=(11, 2)))
    upstream.script("agg", Reply("Paris", usage=(40, 4)))
    events = run_events(serve_moa(PRICED), ASK)
    a = next(e for e in events if e["type"] == "proposal.finished" and e["model"] == "fake:a")
    assert a["call"]["cost_usd"] == pytest.approx((10 * 1.0 + 2 * 2.0) / 1e6)
    assert events[-1]["cost_usd"] == pytest.approx((61 * 1.0 + 8 * 2.0) / 1e6)


def test_an_unpriced_run_says_its_cost_is_unknown(upstream: FakeUpstream, moa_server) -> None:
    assert run_events(moa_server, ASK)[-1]["cost_usd"] is None


def test_a_request_budget_is_kept_before_any_call(upstream: FakeUpstream, serve_moa) -> None:
    """The request's `moa_max_cost_usd` bounds the run as on chat completions."""
    events = run_events(serve_moa(PRICED), {**ASK, "max_tokens": 1000, "moa_max_cost_usd": 1e-6})
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "budget_exceeded"
    assert upstream.requests == []
