"""top_p (nucleus sampling), end to end: set in a recipe, by a served request (chat completions
or Responses) or by `moa ask --top-p`, it reaches the upstream under OpenAI's name and the
embedded model under llama-cpp-python's; left unset, it is not sent at all. A value outside
[0, 1] (OpenAI's range) is refused where it is given: a RecipeError naming the key, a 400 naming the field."""

from __future__ import annotations

import httpx
import openai
import pytest

from moa import Aggregator, MoA, ProposalLayer, RecipeError, Registry, RetryPolicy, recipes
from moa.policies.cache import ResponseCache
from moa.providers.openai.params import chat_params
from moa.strategies.select import SELECT_MAX_TOKENS
from moa.testing import FakeUpstream, Reply
from moa.types import ChatRequest, Message, Sampling
from test_cli import moa

MODEL = "test-moa"
USER = [{"role": "user", "content": "q"}]
QUESTION = (Message(role="user", content="q"),)
OUT_OF_RANGE = [-0.1, 1.5, 2]


def sent_top_p(upstream: FakeUpstream, model: str) -> object:
    (body,) = upstream.requests_for(model)
    return body.get("top_p", "unset")


# -- the settings and what each provider is sent ---------------------------------------------


def test_a_models_top_p_wins_over_the_defaults_and_falls_back_to_them() -> None:
    defaults = Sampling(temperature=0.7, top_p=0.9)
    assert Sampling(top_p=0.5).merged_over(defaults) == Sampling(temperature=0.7, top_p=0.5)
    assert Sampling(seed=1).merged_over(defaults).top_p == 0.9


def test_the_openai_adapter_sends_top_p_only_when_set() -> None:
    assert chat_params(ChatRequest("m", QUESTION, Sampling(top_p=0.9)))["top_p"] == 0.9
    assert "top_p" not in chat_params(ChatRequest("m", QUESTION, Sampling(temperature=0.5)))


def test_the_embedded_model_is_given_top_p_only_when_set() -> None:
    from moa.providers.local.provider import LocalProvider

    provider = LocalProvider()
    assert provider._kwargs(ChatRequest("smollm2", QUESTION, Sampling(top_p=0.3)))["top_p"] == 0.3
    # Unset, llama-cpp-python's own default (0.95) applies, as on the batched path.
    assert "top_p" not in provider._kwargs(ChatRequest("smollm2", QUESTION))


def test_top_p_is_part_of_a_cached_answers_key() -> None:
    keys = {
        ResponseCache.key("fake", ChatRequest("m", QUESTION, Sampling(seed=1, top_p=top_p)))
        for top_p in (None, 0.5, 0.9)
    }
    assert len(keys) == 3 and None not in keys


# -- recipes -----------------------------------------------------------------------------------


def test_a_recipe_sets_top_p_in_its_defaults_and_per_model(
    upstream: FakeUpstream, recipe_file
) -> None:
    recipe = recipes.load(
        recipe_file(
            """
[defaults]
top_p = 0.9
[[layers]]
models = ["fake:a", { model = "fake:b", top_p = 0.5 }]
[aggregator]
model = "fake:agg"
top_p = 1
"""
        )
    )
    recipes.build(recipe).run("q")
    assert [sent_top_p(upstream, m) for m in ("a", "b", "agg")] == [0.9, 0.5, 1.0]


def test_a_recipe_without_top_p_leaves_it_to_the_provider(
    upstream: FakeUpstream, recipe_file
) -> None:
    recipe = recipes.load(recipe_file('[aggregator]\nmodel = "fake:agg"\ntemperature = 0.2'))
    recipes.build(recipe).run("q")
    assert sent_top_p(upstream, "agg") == "unset"


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_recipe_top_p_outside_0_to_1_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(RecipeError, match=r"layers\.0\.models\.0\.top_p: Input should be"):
        recipes.parse(
            f'[[layers]]\nmodels = [{{ model = "a:b", top_p = {value} }}]\n'
            '[aggregator]\nmodel = "a:c"'
        )


# -- the server --------------------------------------------------------------------------------


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_completions_top_p_reaches_the_aggregator_only(
    upstream: FakeUpstream, moa_server, stream: bool
) -> None:
    answer = client(moa_server).chat.completions.create(
        model=MODEL, messages=USER, top_p=0.5, stream=stream
    )
    if stream:
        list(answer)  # type: ignore[arg-type]
    assert sent_top_p(upstream, "agg") == 0.5
    # Proposers keep the recipe's sampling, as with temperature.
    assert [sent_top_p(upstream, m) for m in ("a", "b")] == ["unset", "unset"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_responses_top_p_reaches_the_aggregator_only(
    upstream: FakeUpstream, moa_server, stream: bool
) -> None:
    answer = client(moa_server).responses.create(model=MODEL, input="q", top_p=0.5, stream=stream)
    if stream:
        list(answer)  # type: ignore[call-overload]
    assert sent_top_p(upstream, "agg") == 0.5
    assert [sent_top_p(upstream, m) for m in ("a", "b")] == ["unset", "unset"]


def test_request_sampling_all_sends_a_requests_top_p_to_every_call(
    upstream: FakeUpstream, serve_moa
) -> None:
    recipe = (
        'name = "test-moa"\nrequest_sampling = "all"\n[retry]\nmax_attempts = 1\n'
        '[[layers]]\nmodels = ["fake:a", { model = "fake:b", top_p = 0.8 }]\n'
        '[aggregator]\nmodel = "fake:agg"\n'
    )
    client(serve_moa(recipe)).chat.completions.create(model=MODEL, messages=USER, top_p=0.25)
    assert [sent_top_p(upstream, m) for m in ("a", "b", "agg")] == [0.25, 0.25, 0.25]


@pytest.mark.parametrize("value", [*OUT_OF_RANGE, None])
@pytest.mark.parametrize(
    ("route", "body"),
    [("chat/completions", {"messages": USER}), ("responses", {"input": "q"})],
    ids=["chat", "responses"],
)
def test_a_served_top_p_outside_0_to_1_is_a_400_naming_it(
    upstream: FakeUpstream, moa_server, route: str, body: dict, value: object
) -> None:
    request = {"model": MODEL, **body, "top_p": value}
    if value is None:  # JSON null: as if not sent
        assert httpx.post(f"{moa_server.url}/v1/{route}", json=request).status_code == 200
        assert sent_top_p(upstream, "agg") == "unset"
        return
    response = httpx.post(f"{moa_server.url}/v1/{route}", json=request)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "top_p" and error["type"] == "invalid_request_error"
    assert upstream.requests == []  # refused before any upstream call


# -- strategies' own calls ---------------------------------------------------------------------


def test_a_strategys_side_call_samples_with_the_runs_top_p(
    upstream: FakeUpstream, registry: Registry
) -> None:
    """`select`'s choosing call keeps the client's temperature and top_p (not its max_tokens,
    which is for the answer the client reads)."""
    upstream.script("agg", Reply("1"))
    mixture = MoA(
        ProposalLayer("fake:a", "fake:b"),
        Aggregator("fake:agg", strategy="select"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )
    mixture.run("q", aggregator_sampling=Sampling(temperature=0.2, top_p=0.5, max_tokens=300))
    (selector,) = upstream.requests_for("agg")
    assert (selector["temperature"], selector["top_p"]) == (0.2, 0.5)
    assert selector["max_tokens"] == SELECT_MAX_TOKENS


# -- moa ask -----------------------------------------------------------------------------------


def test_moa_ask_top_p_reaches_every_call(upstream: FakeUpstream, recipe_file) -> None:
    recipe = '[[layers]]\nmodels = ["fake:a"]\n[aggregator]\nmodel = "fake:agg"\n'
    done = moa("ask", "q", "-q", "-r", str(recipe_file(recipe)), "--top-p", "0.4")
    assert done.returncode == 0, done.stderr
    assert [sent_top_p(upstream, m) for m in ("a", "agg")] == [0.4, 0.4]


def test_moa_ask_refuses_a_top_p_outside_0_to_1() -> None:
    done = moa("ask", "q", "--top-p", "1.5")
    assert done.returncode == 2
    assert "--top-p': 1.5 is out of range" in done.stderr
