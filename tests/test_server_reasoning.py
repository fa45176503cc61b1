"""`moa serve` shows the proposal layers as `reasoning_content` when asked (body, header or
recipe): a heading per layer and per model, the proposals' text, then the answer as `content`."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from conftest import SERVER_RECIPE
from moa.events import ProposalDelta, ProposalFailed, ProposalFinished, ProposalStarted
from moa.server.reasoning import LayerNarrator, narrate
from moa.testing import FakeUpstream, Reply
from moa.trace import CallRecord

MODEL = "test-moa"
ASK = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France?"}]}


def record(layer: int, index: int, model: str, output: str = "", status: str = "ok") -> CallRecord:
    return CallRecord(
        layer=layer,
        index=index,
        model=model,
        role="proposer",
        output=output,
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "HTTP 500",
    )


# -- the narrator: concurrent proposals told one after another -------------------------------


def test_the_first_proposer_to_speak_is_streamed_and_the_others_wait_their_turn() -> None:
    narrator = LayerNarrator()
    said = [
        narrator.feed(e)
        for e in (
            ProposalStarted(1, 0, "fake:a"),
            ProposalStarted(1, 1, "fake:b"),
            ProposalDelta(1, 1, "fake:b", "Bee "),
            ProposalDelta(1, 0, "fake:a", "Ay "),
            ProposalDelta(1, 1, "fake:b", "buzz"),
            ProposalDelta(1, 0, "fake:a", "yes"),
            ProposalFinished(record(1, 1, "fake:b", "Bee buzz")),
            ProposalFinished(record(1, 0, "fake:a", "Ay yes")),
        )
    ]
    assert said[:3] == ["", "", "### Layer 1\n\n**fake:b**\n\nBee "]
    assert said[3] == ""  # a waits: b has the floor
    assert said[4] == "buzz"
    # b finishes: a gets the floor with what it had said so far, then streams on.
    assert said[6] == "\n\n**fake:a**\n\nAy yes"
    assert said[7] == "\n\n"


def test_whole_answer_proposals_and_failures_are_told_when_they_end() -> None:
    text = narrate(
        [
            record(1, 0, "fake:a", "proposal A"),
            record(1, 1, "fake:b", status="failed"),
            record(2, 0, "fake:c", "proposal C"),
        ]
    )
    assert text == (
        "### Layer 1\n\n**fake:a**\n\nproposal A\n\n**fake:b** — failed: HTTP 500\n\n"
        "### Layer 2\n\n**fake:c**\n\nproposal C"
    )


def test_a_cancelled_straggler_keeps_what_it_had_said_and_is_marked() -> None:
    narrator = LayerNarrator()
    narrator.feed(ProposalStarted(1, 0, "fake:slow"))
    first = narrator.feed(ProposalDelta(1, 0, "fake:slow", "half an"))
    last = narrator.feed(ProposalFailed(record(1, 0, "fake:slow", "half an", status="cancelled")))
    assert first.endswith("half an")
    assert last == "\n\n_(cancelled: the layer moved on without it)_\n\n"


# -- over HTTP --------------------------------------------------------------------------------


def script(upstream: FakeUpstream) -> None:
    upstream.script("a", Reply("proposal A"))
    upstream.script("b", Reply("proposal B"))
    upstream.script("agg", Reply("Paris is the capital"))


def stream_deltas(server, body: dict, headers: dict | None = None) -> list[dict]:
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        lines = [ln[6:] for ln in response.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(ln)["choices"][0]["delta"] for ln in lines[:-1] if json.loads(ln)["choices"]]


def reasoning_then_content(deltas: list[dict]) -> tuple[str, str]:
    kinds = [k for d in deltas for k in ("reasoning_content", "content") if d.get(k)]
    assert kinds == sorted(kinds, key=lambda k: k == "content"), "all reasoning comes first"
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    return reasoning, "".join(d.get("content") or "" for d in deltas)


def test_off_by_default_the_stream_has_no_reasoning(upstream: FakeUpstream, moa_server) -> None:
    script(upstream)
    deltas = stream_deltas(moa_server, {**ASK, "stream": True})
    assert not any("reasoning_content" in d for d in deltas)
    assert "".join(d.get("content") or "" for d in deltas) == "Paris is the capital"


@pytest.mark.parametrize(
    ("extra", "headers"),
    [({"moa_layers": "reasoning"}, None), ({}, {"X-MoA-Layers": "reasoning"})],
    ids=["body", "header"],
)
def test_asked_for_the_proposals_stream_as_reasoning_before_the_answer(
    upstream: FakeUpstream, moa_server, extra: dict, headers: dict | None
) -> None:
    script(upstream)
    deltas = stream_deltas(moa_server, {**ASK, "stream": True, **extra}, headers)
    reasoning, content = reasoning_then_content(deltas)
    assert content == "Paris is the capital"
    assert reasoning.startswith("### Layer 1\n\n")
    assert "**fake:a**\n\nproposal A" in reasoning
    assert "**fake:b**\n\nproposal B" in reasoning


def test_proposers_stream_only_for_a_thinking_block(upstream: FakeUpstream, moa_server) -> None:
    script(upstream)
    stream_deltas(moa_server, {**ASK, "stream": True})
    assert [c.streamed for c in upstream.calls] == [False, False, True]  # a, b whole; agg
    upstream.reset()
    script(upstream)
    stream_deltas(moa_server, {**ASK, "stream": True, "moa_layers": "reasoning"})
    assert [c.streamed for c in upstream.calls] == [True, True, True]


def test_a_recipe_can_turn_it_on_and_a_request_off(upstream: FakeUpstream, serve_moa) -> None:
    script(upstream)
    server = serve_moa(
        SERVER_RECIPE.replace('name = "test-moa"', 'name = "test-moa"\nshow_layers = "reasoning"')
    )
    reasoning, _ = reasoning_then_content(stream_deltas(server, {**ASK, "stream": True}))
    assert "proposal A" in reasoning
    off = stream_deltas(server, {**ASK, "stream": True}, {"X-MoA-Layers": "off"})
    assert not any("reasoning_content" in d for d in off)


def test_the_stream_opens_with_the_first_proposal_not_the_last(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("a", Reply("quick"))
    upstream.script("b", Reply("slow", delay_s=30))
    body = {**ASK, "stream": True, "moa_layers": "reasoning"}
    with httpx.stream("POST", f"{moa_server.url}/v1/chat/completions", json=body, timeout=20) as r:
        assert r.status_code == 200
        first = next(ln for ln in r.iter_lines() if '"reasoning_content"' in ln)
    assert "quick" in json.loads(first[6:])["choices"][0]["delta"]["reasoning_content"]
    # b has not answered (its request may not even have arrived yet on a loaded machine).
    assert all(c.first_byte is None for c in upstream.calls if c.model == "b")


def test_the_non_streamed_message_carries_reasoning_content(
    upstream: FakeUpstream, moa_server
) -> None:
    script(upstream)
    upstream.script("b", Reply(status=500))
    sdk = openai.OpenAI(base_url=f"{moa_server.url}/v1", api_key="unused", max_retries=0)
    completion = sdk.chat.completions.create(**ASK, extra_body={"moa_layers": "reasoning"})
    message = completion.choices[0].message
    assert message.content == "Paris is the capital"
    assert message.model_extra["reasoning_content"].startswith("### Layer 1\n\n**fake:a**")
    assert "**fake:b** — failed" in message.model_extra["reasoning_content"]
    plain = sdk.chat.completions.create(**ASK)
    assert "reasoning_content" not in (plain.choices[0].message.model_extra or {})


def test_an_unknown_mode_is_a_bad_request(moa_server) -> None:
    response = httpx.post(
        f"{moa_server.url}/v1/chat/completions", json={**ASK, "moa_layers": "thoughts"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "moa_layers"


SAMPLED = SERVER_RECIPE.replace(
    'models = ["fake:a", "fake:b"]',
    'models = [{model = "fake:a", temperature = 0.7, seed = 1, samples = 3}, "fake:b"]',
)


def test_samples_of_one_model_are_numbered_with_their_settings(
    upstream: FakeUpstream, serve_moa
) -> None:
    script(upstream)
    server = serve_moa(SAMPLED)
    body = {**ASK, "moa_layers": "reasoning"}
    streamed, _ = reasoning_then_content(stream_deltas(server, {**body, "stream": True}))
    whole = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30).json()
    for told in (streamed, whole["choices"][0]["message"]["reasoning_content"]):
        heads = [line for line in told.splitlines() if line.startswith("**")]
        assert sorted(heads) == [
            "**fake:a #1 · T=0.7, seed 1**",
            "**fake:a #2 · T=0.7, seed 2**",
            "**fake:a #3 · T=0.7, seed 3**",
            "**fake:b**",  # one slot of its model: its name is enough
        ]
