"""End to end on the real embedded model (SmolLM2-135M), offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_local
from moa import Done, Sampling, Token, recipes

pytestmark = [
    pytest.mark.local_model,
    needs_local,
]


async def test_the_local_recipe_answers_offline_and_streams() -> None:
    mixture = recipes.build(recipes.load("local"))
    tokens: list[str] = []
    result = None
    async for event in mixture.stream("Name one planet."):
        if isinstance(event, Token):
            tokens.append(event.text)
        elif isinstance(event, Done):
            result = event.result
    await mixture.aclose()
    assert result is not None
    proposals = result.proposals(1)
    assert [p.model for p in proposals] == ["local:smollm2"] * 5 + ["local:gemma3-270m"] * 5
    assert all(c.ok and c.output.strip() for c in proposals)
    assert len({c.output for c in proposals}) > 1  # the samples differ
    assert result.calls == proposals  # medoid: no aggregator call
    assert result.text in {c.output for c in proposals}  # one of them, verbatim
    assert result.text == "".join(tokens)
    assert all("\n" not in c.output.strip() for c in proposals[5:])  # Gemma stops at a newline


async def test_the_base_model_is_prompted_as_a_completion() -> None:
    from moa.providers.local.provider import LocalProvider
    from moa.types import ChatRequest, Message

    examples = [
        ("What is the capital of Sweden?", "Stockholm."),
        ("Who wrote Hamlet?", "Shakespeare."),
    ]
    turns = [
        m
        for q, a in examples
        for m in (Message(role="user", content=q), Message(role="assistant", content=a))
    ]
    request = ChatRequest(
        "gemma3-270m",
        (*turns, Message(role="user", content="What is the capital of France?")),
        Sampling(temperature=0.0, max_tokens=8, stop=("\n",)),
    )
    answer = await LocalProvider().complete(request)
    assert "Paris" in answer.text


async def test_a_prompt_over_the_window_is_a_context_length_error_not_malformed() -> None:
    from moa.errors import ContextLengthError
    from moa.providers.local.provider import LocalProvider
    from moa.types import ChatRequest, Message

    provider = LocalProvider(n_ctx=256)
    request = ChatRequest("smollm2", (Message(role="user", content="word " * 600),), Sampling())
    with pytest.raises(ContextLengthError):
        await provider.complete(request)


def test_the_local_profile_counts_with_the_models_own_tokenizer() -> None:
    from moa.providers.local.provider import LocalProvider
    from moa.tokens import estimate_tokens

    profile = LocalProvider().profile("smollm2")
    text = "The capital of France is Paris."
    assert 0 < profile.count_tokens(text) != estimate_tokens(text)
    assert profile.system_role  # SmolLM2's template has one


CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 24}, "sunny": {"type": "boolean"}},
    "required": ["city", "sunny"],
}


async def test_the_embedded_aggregator_answers_in_the_requested_json_schema() -> None:
    from moa import Aggregator, Answering, MoA, ProposalLayer
    from moa.types import ResponseFormat

    mixture = MoA(ProposalLayer("local:smollm2"), Aggregator("local:smollm2"))
    result = await mixture.arun(
        "Name a sunny city.",
        sampling=Sampling(max_tokens=48, temperature=0.0),
        aggregator_sampling=Sampling(max_tokens=96),
        answering=Answering(response_format=ResponseFormat("city", CITY_SCHEMA)),
    )
    await mixture.aclose()
    answer = json.loads(result.text)  # llama.cpp's grammar keeps it to the schema
    assert set(answer) == {"city", "sunny"}
    assert isinstance(answer["city"], str) and isinstance(answer["sunny"], bool)
    # The proposer wrote free text: the format is the aggregator's only.
    proposal = result.proposals(1)[0].output
    with pytest.raises(ValueError):
        json.loads(proposal)


async def test_the_embedded_model_refuses_tools_by_name() -> None:
    from moa import Aggregator, MoA, ProposalLayer, UnsupportedFieldError
    from moa.types import Answering, Tools

    mixture = MoA(ProposalLayer("local:smollm2"), Aggregator("local:smollm2"))
    with pytest.raises(UnsupportedFieldError) as caught:
        await mixture.arun(
            "q",
            answering=Answering(
                tools=Tools(({"type": "function", "function": {"name": "f"}},), "required")
            ),
        )
    assert caught.value.param == "tools"


async def test_a_base_model_without_a_chat_template_follows_the_schema_by_grammar() -> None:
    from moa.providers.local.provider import LocalProvider
    from moa.types import ChatRequest, Message, ResponseFormat

    provider = LocalProvider()
    try:
        provider.check("gemma3-270m")
    except Exception as exc:  # the optional wheel of the base model
        pytest.skip(f"gemma3-270m is not installed: {exc}")
    request = ChatRequest(
        "gemma3-270m",
        (Message(role="user", content="Name a sunny city."),),
        Sampling(max_tokens=64, temperature=0.0),
        response_format=ResponseFormat("city", CITY_SCHEMA),
    )
    completion = await provider.complete(request)
    answer = json.loads(completion.text)
    assert set(answer) == {"city", "sunny"}


async def test_the_embedded_model_continues_a_final_assistant_message_from_its_kv_cache() -> None:
    # One call at a time: the continuation runs on the `Llama`'s own context and cache.
    from moa.providers.local.provider import _LLAMA_THREAD, LocalProvider
    from moa.types import ChatRequest, Message

    provider = LocalProvider(batching=False)
    head = (Message(role="user", content="Count from one to ten in words."),)
    prefix = "One, two, three,"
    request = ChatRequest(
        "smollm2",
        (*head, Message(role="assistant", content=prefix)),
        Sampling(temperature=0.0, max_tokens=8),
    )
    loaded = provider._model("smollm2")
    rendered = loaded.render_continuation(request.messages)
    assert rendered.endswith("<|im_start|>assistant\n" + prefix)  # open, not a new turn
    text = "".join([c.text async for c in provider.stream(request)])
    assert text.strip() and not text.lstrip().startswith("One")
    # The next step, with the answer longer by what was just written, re-reads only that.
    llama = loaded.llama
    longer = loaded.render_continuation((*head, Message(role="assistant", content=prefix + text)))
    tokens = llama.tokenize(longer.encode(), special=True)
    cached = _LLAMA_THREAD.submit(lambda: llama._input_ids.tolist()).result()
    shared = next(
        (i for i, (a, b) in enumerate(zip(cached, tokens, strict=False)) if a != b), len(cached)
    )
    assert shared >= len(llama.tokenize(rendered.encode(), special=True))


async def test_staircase_runs_on_the_local_recipe() -> None:
    from moa import Aggregator

    mixture = recipes.build(recipes.load("local-synthesize"))
    mixture.aggregator = Aggregator(mixture.aggregator.agent, staircase=True, chunk_tokens=4)
    tokens: list[str] = []
    result = None
    async for event in mixture.stream("Name one planet.", sampling=Sampling(max_tokens=16)):
        if isinstance(event, Token):
            tokens.append(event.text)
        elif isinstance(event, Done):
            result = event.result
    await mixture.aclose()
    assert result is not None and result.text.strip() and result.text == "".join(tokens)
    aggregator = result.calls[-1]
    assert aggregator.role == "aggregator" and aggregator.steps
    assert sum(s.tokens_added for s in aggregator.steps) == len(tokens)


def test_loading_the_embedded_models_prints_nothing_on_stderr() -> None:
    """llama.cpp's warnings (Gemma 3's "using full-size SWA cache", once per context) are not
    the user's business: stderr is moa's progress and its errors only."""
    script = (
        "import asyncio\n"
        "from moa.providers.local.provider import LocalProvider\n"
        "from moa.types import ChatRequest, Message, Sampling\n"
        "provider = LocalProvider()\n"
        "for model in ('gemma3-270m', 'smollm2'):\n"  # each: its own context and the batch's
        "    ask = ChatRequest(model, (Message(role='user', content='Hi'),), Sampling(max_tokens=2))\n"
        "    asyncio.run(provider.complete(ask))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stderr == ""


TWO_SMOLLM2 = """
[[layers]]
models = ["local:smollm2", "local:smollm2"]
[aggregator]
model = "local:smollm2"
"""


@pytest.mark.parametrize("batching", ["1", "0"])
async def test_each_embedded_call_says_what_llama_cpp_ran_with(
    monkeypatch: pytest.MonkeyPatch, batching: str
) -> None:
    """Batched or one call at a time, the trace names the threads llama.cpp computed with."""
    monkeypatch.setenv("MOA_LOCAL_BATCH", batching)
    monkeypatch.delenv("MOA_LOCAL_THREADS", raising=False)
    mixture = recipes.build(recipes.parse(TWO_SMOLLM2))
    result = await mixture.arun("Name one planet.", sampling=Sampling(max_tokens=8))
    await mixture.aclose()
    assert len(result.calls) == 3
    for call in result.calls:
        assert call.runtime is not None
        assert call.runtime.startswith("llama.cpp: ") and " cores (" in call.runtime
    assert result.to_dict()["calls"][0]["runtime"] == result.calls[0].runtime


def test_moa_ask_verbose_prints_the_threads_of_every_call(tmp_path: Path) -> None:
    recipe = tmp_path / "two.toml"
    recipe.write_text(TWO_SMOLLM2)
    env = {**os.environ, "MOA_LOCAL_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "moa",
            "ask",
            "-r",
            str(recipe),
            "--verbose",
            "--max-tokens",
            "8",
            "Hi",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "llama.cpp: 1 of " in line]
    assert len(lines) == 3, done.stderr  # two proposers and the aggregator
    assert all("(MOA_LOCAL_THREADS)" in line for line in lines)
