"""The embedded model serves concurrent requests as one llama.cpp batch (a sequence each), on
the real model (SmolLM2-135M), with few tokens so that it stays quick."""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import needs_local
from moa.providers.local.provider import LocalProvider
from moa.types import ChatRequest, Message, ResponseFormat, Sampling

pytestmark = [
    pytest.mark.local_model,
    needs_local,
]

QUESTIONS = ("Why is the sky blue?", "Name a planet.", "Who wrote Hamlet?")


def ask(question: str, **sampling: object) -> ChatRequest:
    settings = {"temperature": 0.0, "max_tokens": 8, **sampling}
    return ChatRequest(
        "smollm2",
        (Message(role="user", content=question),),
        Sampling(**settings),  # type: ignore[arg-type]
    )


class Recorder:
    """Runs requests concurrently and notes, in order, each one's first chunk and its end."""

    def __init__(self, provider: LocalProvider) -> None:
        self.provider = provider
        self.events: list[tuple[str, int]] = []

    async def one(self, index: int, request: ChatRequest) -> tuple[str, object, str | None]:
        parts: list[str] = []
        usage, finish = None, None
        async for chunk in self.provider.stream(request):
            if chunk.text:
                if not parts:
                    self.events.append(("first", index))
                parts.append(chunk.text)
            usage = chunk.usage or usage
            finish = chunk.finish_reason or finish
        self.events.append(("end", index))
        return "".join(parts), usage, finish

    async def all(self, requests: list[ChatRequest]) -> list[tuple[str, object, str | None]]:
        return list(await asyncio.gather(*(self.one(i, r) for i, r in enumerate(requests))))


async def sequential(requests: list[ChatRequest]) -> list[tuple[str, object, str | None]]:
    recorder = Recorder(LocalProvider(batching=False))
    return [await recorder.one(i, r) for i, r in enumerate(requests)]


async def test_every_request_streams_its_first_chunk_before_any_finishes() -> None:
    requests = [ask(q) for q in QUESTIONS]
    recorder = Recorder(LocalProvider(batching=True))
    await recorder.all(requests)
    kinds = [kind for kind, _ in recorder.events]
    assert kinds == ["first"] * 3 + ["end"] * 3
    assert {i for _, i in recorder.events} == {0, 1, 2}


async def test_one_after_another_without_batching() -> None:
    recorder = Recorder(LocalProvider(batching=False))
    await recorder.all([ask(q) for q in QUESTIONS[:2]])
    assert recorder.events == [("first", 0), ("end", 0), ("first", 1), ("end", 1)]


async def test_each_request_gets_the_sequential_paths_answer_usage_and_finish() -> None:
    # Temperature 0 and sampled with a seed: the batch answers as one call at a time does.
    requests = [
        ask(QUESTIONS[0]),
        ask(QUESTIONS[1], max_tokens=48),
        ask(QUESTIONS[0], temperature=0.7, seed=2),
    ]
    batched = await Recorder(LocalProvider(batching=True)).all(requests)
    alone = await sequential(requests)
    assert batched == alone
    assert len({text for text, _, _ in batched}) == 3
    assert [finish for _, _, finish in batched] == ["length", "stop", "length"]
    assert batched[0][1].output_tokens == 8  # type: ignore[attr-defined]


async def test_a_requests_top_p_is_sampled_with_batched_or_alone() -> None:
    # A tiny top_p keeps only the likeliest token: a hot, seeded sample reads as the greedy answer.
    hot = [ask(q, temperature=1.5, seed=5, top_p=0.01) for q in QUESTIONS]
    greedy = [ask(q) for q in QUESTIONS]
    batched = await Recorder(LocalProvider(batching=True)).all(hot)
    assert batched == await sequential(hot)
    assert [text for text, _, _ in batched] == [text for text, _, _ in await sequential(greedy)]


async def test_stop_strings_end_each_sequence_where_the_sequential_path_does() -> None:
    # A stop of two characters: the first is held back until the second shows whether it is one.
    count = "Count from one to ten in words, separated by commas."
    requests = [ask(count, max_tokens=24, stop=("\n2",)), ask(QUESTIONS[1], stop=(" ",))]
    batched = await Recorder(LocalProvider(batching=True)).all(requests)
    assert batched == await sequential(requests)
    (count_text, _, count_finish), (planet_text, _, planet_finish) = batched
    assert count_text.strip() and "\n2" not in count_text, batched
    assert planet_text.strip() and " " not in planet_text.strip(), batched
    assert (count_finish, planet_finish) == ("stop", "stop"), batched


async def test_a_cancelled_request_leaves_the_others_complete() -> None:
    provider = LocalProvider(batching=True)
    first = asyncio.Event()

    async def abandoned() -> None:
        async for chunk in provider.stream(ask(QUESTIONS[0], max_tokens=64)):
            if chunk.text:
                first.set()
                await asyncio.Event().wait()  # never resumes: cancelled below

    others = [ask(q, max_tokens=16) for q in QUESTIONS[1:]]
    recorder = Recorder(provider)
    left = asyncio.create_task(abandoned())
    finished = asyncio.create_task(recorder.all(others))
    await first.wait()
    left.cancel()
    results = await finished
    assert results == await sequential(others)
    with pytest.raises(asyncio.CancelledError):
        await left


async def test_grammar_and_continuation_requests_run_beside_a_batch() -> None:
    provider = LocalProvider(batching=True)
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16}}}
    grammar = ChatRequest(
        "smollm2",
        (Message(role="user", content="Name a sunny city."),),
        Sampling(temperature=0.0, max_tokens=24),
        response_format=ResponseFormat("city", schema),
    )
    continuation = ChatRequest(
        "smollm2",
        (
            Message(role="user", content="Count from one to ten in words."),
            Message(role="assistant", content="One, two, three,"),
        ),
        Sampling(temperature=0.0, max_tokens=6),
    )
    plain = [ask(q) for q in QUESTIONS[:2]]
    results = await Recorder(provider).all([grammar, continuation, *plain])
    assert set(json.loads(results[0][0])) <= {"city"}
    assert results[1][0].strip() and not results[1][0].lstrip().startswith("One")
    assert results[1:] == await sequential([continuation, *plain])


async def test_a_continuation_reads_only_what_follows_the_cells_the_step_before_left() -> None:
    # A staircase aggregator's next step re-sends the answer so far: in the batch it takes up
    # the cells the step it replaces left, and reads only the new tail.
    from moa.providers.local.provider import resolve_model_path

    provider = LocalProvider(batching=True)
    head = (Message(role="user", content="Count from one to ten in words."),)

    def step(prefix: str) -> ChatRequest:
        messages = (*head, Message(role="assistant", content=prefix))
        return ChatRequest("smollm2", messages, Sampling(temperature=0.0, max_tokens=6))

    first = (await Recorder(provider).one(0, step("One, two,")))[0]
    batch = provider._scheduler(resolve_model_path("smollm2"))._batch
    assert batch is not None
    loaded = provider._model("smollm2")
    longer = step("One, two," + first)
    prompt = loaded.batch_prompt(longer.messages)[0]
    read_before = batch.prompt_tokens_read
    second = await Recorder(provider).one(0, longer)
    read = batch.prompt_tokens_read - read_before
    assert 1 <= read <= 3 + len(loaded.llama.tokenize(first.encode(), add_bos=False))
    assert read < len(prompt) / 3
    assert second == (await sequential([longer]))[0]


async def test_forgetting_cached_prompts_makes_the_next_call_read_its_prompt_whole() -> None:
    from moa.providers.local.provider import forget_cached_prompts, resolve_model_path

    provider = LocalProvider(batching=True)
    request = ask(QUESTIONS[0], max_tokens=2)
    await Recorder(provider).one(0, request)
    batch = provider._scheduler(resolve_model_path("smollm2"))._batch
    assert batch is not None
    prompt = provider._model("smollm2").batch_prompt(request.messages)[0]

    before = batch.prompt_tokens_read
    await Recorder(provider).one(0, request)
    assert batch.prompt_tokens_read - before == 1  # all but the last token was still there

    forget_cached_prompts()
    before = batch.prompt_tokens_read
    await Recorder(provider).one(0, request)
    assert batch.prompt_tokens_read - before == len(prompt)
