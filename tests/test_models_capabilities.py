"""`GET /v1/models` says what a request will get: a capability it reports true is honoured, one
it reports false is refused with a 400 naming the field, never answered with something else.

A strategy that answers with a proposal verbatim (`medoid`, the `local` recipe's) cannot follow
a schema nor give n different answers, whatever its provider declares; a recipe with proposal
layers can stream them (`moa_layers`)."""

from __future__ import annotations

import httpx
import openai
import pytest

from moa.testing import FakeUpstream, Reply
from test_server_tools import ASK, recipe

SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "city", "schema": {"type": "object"}},
}
# Everything a request may ask of the answer, with the capability that answers for it.
ASKS = {
    "structured_output": ("response_format", {"response_format": SCHEMA}),
    "logprobs": ("logprobs", {"logprobs": True}),
    "n": ("n", {"n": 2}),
}


def verbatim_recipe(base_url: str) -> str:
    """The tool recipe's providers (its aggregator's declares everything), answered by medoid."""
    return recipe(base_url).replace(
        'model = "smart:agg"', 'model = "smart:agg"\nstrategy = "medoid"'
    )


def card(server) -> dict:
    (entry,) = httpx.get(f"{server.url}/v1/models").json()["data"]
    return entry


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def verbatim(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("Paris."))
    upstream.script("b", Reply("Paris, France."))
    return serve_moa(verbatim_recipe(upstream.base_url))


@pytest.fixture
def writing(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("Paris."))
    upstream.script("b", Reply("Paris, France."))
    upstream.script("agg", Reply('{"city": "Paris"}'))
    return serve_moa(recipe(upstream.base_url))


def test_a_verbatim_strategy_reports_what_it_cannot_give(verbatim) -> None:
    entry = card(verbatim)
    capabilities = entry["capabilities"]
    assert [capabilities[c] for c in ("tools", "structured_output", "logprobs", "n")] == [False] * 4
    assert entry["moa"]["strategy"] == "medoid"


@pytest.mark.parametrize("capability", sorted(ASKS))
def test_what_is_reported_false_is_refused_naming_the_field(
    verbatim, upstream: FakeUpstream, capability: str
) -> None:
    field, body = ASKS[capability]
    assert card(verbatim)["capabilities"][capability] is False
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(verbatim).chat.completions.create(model="tool-moa", messages=ASK, **body)
    assert caught.value.param == field
    assert upstream.requests == []


@pytest.mark.parametrize("capability", sorted(ASKS))
def test_what_is_reported_true_is_honoured(writing, capability: str) -> None:
    _, body = ASKS[capability]
    assert card(writing)["capabilities"][capability] is True
    reply = sdk(writing).chat.completions.create(model="tool-moa", messages=ASK, **body)
    assert len(reply.choices) == body.get("n", 1)


def test_a_recipe_with_layers_can_stream_them(verbatim, upstream: FakeUpstream) -> None:
    entry = card(verbatim)
    assert entry["capabilities"]["layer_streaming"] is True
    assert entry["moa"]["show_layers"] == "off"
    stream = sdk(verbatim).chat.completions.create(
        model="tool-moa", messages=ASK, stream=True, extra_body={"moa_layers": "reasoning"}
    )
    thinking = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in stream if c.choices
    )
    assert "Paris, France." in thinking


def test_a_recipe_without_layers_has_none_to_stream(serve_moa, upstream: FakeUpstream) -> None:
    server = serve_moa('name = "solo"\n[aggregator]\nmodel = "fake:agg"\n')
    assert card(server)["capabilities"]["layer_streaming"] is False
