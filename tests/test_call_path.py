"""One call, composed: the pure request builder, each policy on its own, and the rules of the
call path that a user can see (usage, finish reasons, timeouts, slots, empty answers)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from moa import Agent, Aggregator, MoA, ProposalLayer, ProviderConfig, Registry, RetryPolicy
from moa.call.chain import RateLimited, Retrying, TimeoutBound
from moa.call.request import Call, build_request
from moa.errors import (
    ConfigError,
    EmptyResponseError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from moa.policies.ratelimit import Limits, RateLimit
from moa.providers.base import ModelProfile
from moa.testing import FakeUpstream, Reply
from moa.tokens import CUT_MARK, estimate_tokens
from moa.trace import Result
from moa.types import ChatRequest, Completion, Message, Sampling, StreamChunk

USER = [Message(role="user", content="question")]


def build(call: Call, profile: ModelProfile | None = None, **kwargs: object):
    return build_request(
        call,
        "m",
        profile or ModelProfile(),
        defaults=kwargs.pop("defaults", Sampling()),  # type: ignore[arg-type]
        timeout_s=5.0,
        **kwargs,  # type: ignore[arg-type]
    )


# -- the request builder: plain values in, a request out ----------------------------------


def test_run_overrides_beat_the_agent_which_beats_the_defaults() -> None:
    agent = Agent("p:m", Sampling(temperature=0.3, seed=1))
    built = build(
        Call(agent, USER, overrides=Sampling(seed=9)),
        defaults=Sampling(temperature=0.9, max_tokens=64),
    )
    assert built.request.sampling == Sampling(temperature=0.3, max_tokens=64, seed=9)


def test_the_agents_system_prompt_goes_before_the_references() -> None:
    agent = Agent("p:m", system="Be brief.")
    built = build(Call(agent, USER, references=["r1"], prompt="Refs:"))
    system = built.request.messages[0]
    assert system["role"] == "system" and system["content"] == "Be brief.\n\nRefs:\n1. r1"


def test_a_template_without_a_system_role_gets_the_block_in_the_first_user_turn() -> None:
    built = build(
        Call(Agent("p:m"), USER, references=["r1"], prompt="Refs:"),
        ModelProfile(system_role=False),
    )
    assert [m["role"] for m in built.request.messages] == ["user"]
    assert built.request.messages[0]["content"] == "Refs:\n1. r1\n\nquestion"


def test_references_that_fit_are_sent_whole_and_no_cut_is_recorded() -> None:
    built = build(Call(Agent("p:m"), USER, references=["short"], prompt="Refs:"))
    assert built.cuts == [] and built.notes == []


def test_a_huge_max_tokens_is_lowered_so_the_references_still_fit() -> None:
    references = ["word " * 600, "other " * 600]  # ~2,000 tokens by the estimate
    built = build(
        Call(Agent("p:m"), USER, references=references, prompt="Refs:"),
        ModelProfile(context_window=8192),
        defaults=Sampling(max_tokens=100_000),
    )
    assert built.request.sampling.max_tokens is not None
    assert built.request.sampling.max_tokens < 8192
    assert CUT_MARK not in built.request.messages[0]["content"]  # nothing was cut
    assert built.notes and "max_tokens lowered from 100000" in built.notes[0]


def test_references_that_cannot_fit_even_with_a_small_answer_fail_naming_the_knobs() -> None:
    with pytest.raises(ConfigError, match=r"lower max_tokens.*context_window"):
        build(
            Call(Agent("p:m"), USER, references=["word " * 5000], prompt="Refs:"),
            ModelProfile(context_window=512),
        )


def test_cuts_say_how_much_of_each_reference_was_kept() -> None:
    built = build(
        Call(Agent("p:m"), USER, references=["alpha " * 2000, "beta " * 500], prompt="Refs:"),
        ModelProfile(context_window=4096),
        defaults=Sampling(max_tokens=256),
    )
    (alpha, beta) = built.cuts
    assert alpha.total == len("alpha " * 2000) and 0 < alpha.kept < alpha.total
    assert beta.total == len("beta " * 500)


def test_the_models_own_token_counter_is_used() -> None:
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return 1

    build(
        Call(Agent("p:m"), USER, references=["r"], prompt="Refs:"),
        ModelProfile(count_tokens=count),
    )
    assert "r" in counted and "Refs:" in counted


def test_cjk_text_is_not_undercounted() -> None:
    chinese = "混合代理模型的答案" * 10  # 90 characters, roughly 60-130 tokens in real BPEs
    assert estimate_tokens(chinese) >= 90
    assert estimate_tokens("a" * 90) == 31  # alphabetic text keeps 3 characters a token


# -- each policy on its own, around a scripted provider ------------------------------------


class Scripted:
    """A provider that answers from a list of outcomes: text, or an exception to raise."""

    name = "scripted"

    def __init__(self, *outcomes: str | Exception, pause_s: float = 0.0) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.pause_s = pause_s
        self.open_streams = 0
        self.most_open = 0

    def _next(self) -> str:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def complete(self, request: ChatRequest) -> Completion:
        await asyncio.sleep(self.pause_s)
        return Completion(self._next())

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        self.open_streams += 1
        self.most_open = max(self.most_open, self.open_streams)
        try:
            text = self._next()
            for word in re.findall(r"\S+\s*", text):
                await asyncio.sleep(self.pause_s)
                yield StreamChunk(word)
        finally:
            self.open_streams -= 1

    def profile(self, model: str) -> ModelProfile:
        return ModelProfile()

    async def aclose(self) -> None:
        pass


def status(code: int) -> UpstreamStatusError:
    return UpstreamStatusError(f"HTTP {code}", provider="scripted", model="m", status_code=code)


REQUEST = ChatRequest("m", tuple(USER), Sampling(), timeout_s=0.2)


async def test_retrying_counts_attempts_on_the_answer() -> None:
    inner = Scripted(status(503), "fine")
    completion = await Retrying(inner, RetryPolicy(base_delay_s=0)).complete(REQUEST)
    assert (completion.text, completion.attempts, inner.calls) == ("fine", 2, 2)


async def test_retrying_a_stream_puts_the_attempts_on_its_first_chunk() -> None:
    inner = Scripted(status(429), "a b")
    chunks = [c async for c in Retrying(inner, RetryPolicy(base_delay_s=0)).stream(REQUEST)]
    assert [c.text for c in chunks] == ["a ", "b"] and chunks[0].attempts == 2


async def test_timeout_bounds_each_gap_of_a_stream_not_its_whole_length() -> None:
    slow_but_steady = Scripted("one two three four five six", pause_s=0.05)
    chunks = [c async for c in TimeoutBound(slow_but_steady).stream(REQUEST)]
    assert len(chunks) == 6  # 0.3 s in all, but no gap reached the 0.2 s timeout
    with pytest.raises(UpstreamTimeoutError, match=r"within 0\.2s"):
        await TimeoutBound(Scripted("late", pause_s=1.0)).complete(REQUEST)


async def test_a_stream_holds_its_concurrency_slot_until_it_is_closed() -> None:
    inner = Scripted("w1 w2 w3 w4", pause_s=0.01)
    limited = RateLimited(inner, Limits({"scripted": RateLimit(max_concurrency=1)}))

    async def drain() -> None:
        async for _ in limited.stream(REQUEST):
            pass

    await asyncio.gather(drain(), drain(), drain())
    assert inner.most_open == 1


# -- the rules of the call path, against the fake upstream -----------------------------------


def test_a_stream_without_usage_gets_an_estimate_marked_as_such(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply("an answer of six words here", ignore_stream_options=True))
    moa = MoA(ProposalLayer("fake:p"), Aggregator("fake:agg"), registry=registry)

    async def streamed() -> Result:
        events = [e async for e in moa.stream("q")]
        return events[-1].result  # type: ignore[attr-defined, no-any-return]

    result = asyncio.run(streamed())
    aggregator = result.calls[-1]
    assert aggregator.usage.output_tokens > 0 and aggregator.usage.input_tokens > 0
    assert aggregator.usage.estimated and result.usage.estimated
    assert result.to_dict()["calls"][-1]["usage_estimated"] is True
    assert not result.calls[0].usage.estimated  # the proposer's usage was reported


def test_a_finish_reason_in_a_chunk_with_an_empty_delta_is_kept(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply("cut short", finish_reason="length"))
    result = MoA(ProposalLayer("fake:p"), Aggregator("fake:agg"), registry=registry).run("q")
    assert result.calls[-1].finish_reason == "length"


def test_an_empty_answer_explained_by_max_tokens_is_not_a_failure(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply("", finish_reason="length"))
    result = MoA(ProposalLayer("fake:p"), Aggregator("fake:agg"), registry=registry).run("q")
    assert result.text == "" and result.calls[-1].ok


def test_an_unexplained_empty_answer_is_a_failure(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("p", Reply(""))
    upstream.script("q", Reply("fine"))
    result = MoA(ProposalLayer("fake:p", "fake:q"), Aggregator("fake:agg"), registry=registry).run(
        "q"
    )
    empty = result.proposals()[0]
    assert empty.status == "failed" and empty.error_kind == EmptyResponseError.kind


def test_the_provider_timeout_applies_and_a_models_own_wins(upstream: FakeUpstream) -> None:
    upstream.script("slow", Reply("late", delay_s=1.0))
    registry = Registry({"fake": ProviderConfig("fake", upstream.base_url, timeout_s=0.2)}, env={})
    moa = MoA(
        ProposalLayer("fake:slow", Agent("fake:slow", timeout_s=5.0)),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
        timeout_s=30.0,  # the recipe's: the provider's 0.2 s is more specific
    )
    provider_bound, model_bound = moa.run("q").proposals()
    assert provider_bound.status == "failed" and provider_bound.error_kind == "timeout"
    assert model_bound.ok and model_bound.output == "late"


async def test_max_concurrency_holds_for_streamed_answers(upstream: FakeUpstream) -> None:
    upstream.script("agg", Reply("one two three four", token_delay_s=0.05))
    registry = Registry(
        {
            "fake": ProviderConfig(
                "fake", upstream.base_url, rate_limit=RateLimit(max_concurrency=1)
            )
        },
        env={},
    )
    moa = MoA(ProposalLayer("fake:p"), Aggregator("fake:agg"), registry=registry)
    await asyncio.gather(moa.arun("first"), moa.arun("second"))
    await moa.aclose()
    streams = sorted(
        (c.arrived, c.finished) for c in upstream.calls if c.model == "agg" and c.finished
    )
    assert len(streams) == 2
    (_, first_done), (second_start, _) = streams
    assert second_start >= first_done  # the second stream was sent only once the first ended


def test_trace_records_the_references_cut_and_warns(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("alpha " * 3000))
    moa = MoA(
        ProposalLayer("fake:a"),
        Aggregator(Agent("fake:agg", context_window=4096)),
        registry=registry,
        defaults=Sampling(max_tokens=3000),
    )
    result = moa.run("q")
    aggregator = result.calls[-1]
    assert aggregator.references_cut and aggregator.shortened
    assert any("references cut" in w or "max_tokens lowered" in w for w in result.warnings)
    assert result.to_dict()["calls"][-1]["references_cut"][0]["total"] == len("alpha " * 3000)


def test_blocking_runs_share_one_loop_and_one_client_until_closed() -> None:
    made: list[Scripted] = []
    closed: list[Scripted] = []

    class Counted(Scripted):
        async def aclose(self) -> None:
            closed.append(self)

    def factory() -> Counted:
        made.append(Counted("an answer"))
        return made[-1]

    registry = Registry(env={})
    registry.add_factory("scripted", factory)
    with MoA(ProposalLayer("scripted:m"), Aggregator("scripted:m"), registry=registry) as moa:
        assert moa.run("one").text == "an answer"
        assert moa.run("two").text == "an answer"
        assert len(made) == 1 and closed == []  # one client served both runs
    assert closed == made  # and the `with` block closed it


def test_the_builtin_ollama_provider_runs_a_whole_layer_at_once(upstream: FakeUpstream) -> None:
    """Ollama queues requests itself: a client cap below the layer's width only adds latency."""
    for name in "abcd":
        upstream.script(name, Reply(name, delay_s=0.3))
    registry = Registry(env={"MOA_OLLAMA_BASE_URL": upstream.base_url})
    moa = MoA(
        ProposalLayer(*(f"ollama:{name}" for name in "abcd")),
        Aggregator("ollama:agg"),
        registry=registry,
    )
    assert all(call.ok for call in moa.run("q").calls)
    assert upstream.max_active == 4


async def test_a_slow_consumer_does_not_time_out_the_stream_it_reads() -> None:
    chunks = []
    async for chunk in TimeoutBound(Scripted("a b c")).stream(REQUEST):  # 0.2 s timeout
        chunks.append(chunk.text)
        await asyncio.sleep(0.3)  # the reader's own time is not the upstream's
    assert chunks == ["a ", "b ", "c"]


# -- the registry is asked once per model ------------------------------------------------------


class CountingRegistry(Registry):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.resolved: list[str] = []

    def resolve(self, ref: str):  # type: ignore[no-untyped-def]
        self.resolved.append(ref)
        return super().resolve(ref)


def test_a_models_route_is_asked_of_the_registry_once_for_all_its_calls(
    upstream: FakeUpstream,
) -> None:
    registry = CountingRegistry({"fake": ProviderConfig("fake", upstream.base_url)}, env={})
    mixture = MoA(
        ProposalLayer("fake:a", "fake:a", "fake:b"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )
    built = len(registry.resolved)  # the MoA checks each agent when it is built

    async def twice() -> None:
        await mixture.arun("q")
        await mixture.arun("q")

    asyncio.run(twice())
    assert sorted(registry.resolved[built:]) == ["fake:a", "fake:agg", "fake:b"]
    assert len(upstream.requests) == 8


def test_a_closed_registry_gets_new_routes_for_its_new_clients(upstream: FakeUpstream) -> None:
    registry = CountingRegistry({"fake": ProviderConfig("fake", upstream.base_url)}, env={})
    mixture = MoA(
        ProposalLayer("fake:a"), Aggregator("fake:agg"), registry=registry, retry=RetryPolicy()
    )
    mixture.run("q")  # its own event loop, closed with its clients at the end
    mixture.run("q")
    assert len(upstream.requests) == 4
    assert registry.resolved.count("fake:a") >= 3  # built, then once per new client
