"""The server tells clients what a run cost and which members failed and why; it honours a
request's budget; `/v1/models` says what each recipe supports; and it refuses to serve a
recipe that would call itself."""

from __future__ import annotations

import httpx
import openai
import pytest

from moa import recipes
from moa.errors import ConfigError
from moa.server.main import serve
from moa.server.selfcall import refuse_self_calls
from moa.testing import FakeUpstream, Reply

MODEL = "test-moa"
PRICED = """
name = "test-moa"
[retry]
max_attempts = 1
[[layers]]
models = [
  { model = "fake:a", price = { input = 10, output = 20 } },
  { model = "fake:b", price = { input = 10, output = 20 } },
]
[aggregator]
model = "fake:agg"
price = { input = 50, output = 100 }
"""
USER = [{"role": "user", "content": "q"}]


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def script_run(upstream: FakeUpstream) -> None:
    # a: (10×10 + 3×20)/1e6 = 0.00016; b: (11×10 + 4×20)/1e6 = 0.00019;
    # agg: (40×50 + 5×100)/1e6 = 0.0025; the run: 0.00285.
    upstream.script("a", Reply("proposal A", usage=(10, 3)))
    upstream.script("b", Reply("proposal B", usage=(11, 4)))
    upstream.script("agg", Reply("the answer", usage=(40, 5)))


def test_the_moa_extension_carries_the_cost_and_usage_keeps_openais_fields(
    upstream: FakeUpstream, serve_moa
) -> None:
    script_run(upstream)
    completion = client(serve_moa(PRICED)).chat.completions.create(model=MODEL, messages=USER)
    extension = (completion.model_extra or {})["moa"]
    assert extension["cost_usd"] == pytest.approx(0.00285)
    assert extension["failed_models"] == []
    assert completion.usage is not None
    assert set(completion.usage.model_dump(exclude_none=True)) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }


def test_a_stream_carries_the_cost_on_its_usage_chunk(upstream: FakeUpstream, serve_moa) -> None:
    script_run(upstream)
    chunks = list(
        client(serve_moa(PRICED)).chat.completions.create(
            model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert (chunks[-1].model_extra or {})["moa"]["cost_usd"] == pytest.approx(0.00285)


def test_failed_members_are_listed_with_typed_reasons(upstream: FakeUpstream, moa_server) -> None:
    upstream.script("a", Reply(status=429))
    upstream.script("b", Reply(status=400, error_code="context_length_exceeded"))
    upstream.script("c", Reply("fine"))
    body = {"model": MODEL, "messages": USER}
    failed = httpx.post(f"{moa_server.url}/v1/chat/completions", json=body, timeout=30).json()
    assert failed["error"]["code"] == "layer_failed"
    assert failed["moa"]["failure_reason"] == "all_proposers_failed"
    reasons = {f["model"]: f["reason"] for f in failed["moa"]["failed_models"]}
    assert reasons == {"fake:a": "rate_limited", "fake:b": "context_length"}
    assert all(f["role"] == "proposer" and f["layer"] == 1 for f in failed["moa"]["failed_models"])


def test_a_member_that_failed_is_listed_beside_a_good_answer(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("a", Reply(status=503))
    completion = client(moa_server).chat.completions.create(model=MODEL, messages=USER)
    (failure,) = (completion.model_extra or {})["moa"]["failed_models"]
    assert (failure["model"], failure["reason"]) == ("fake:a", "upstream_error")
    assert completion.choices[0].message.content == "answer from agg"


def test_a_request_budget_refuses_the_run_before_any_upstream_call(
    upstream: FakeUpstream, serve_moa
) -> None:
    server = serve_moa(PRICED)
    with pytest.raises(openai.BadRequestError) as refused:
        client(server).chat.completions.create(
            model=MODEL, messages=USER, max_tokens=1000, extra_body={"moa_max_cost_usd": 0.001}
        )
    assert refused.value.code == "budget_exceeded"
    assert "max_cost_usd" in refused.value.message
    assert upstream.requests == []


def test_a_budget_on_a_recipe_without_prices_is_a_400_naming_the_model(
    upstream: FakeUpstream, moa_server
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(moa_server).chat.completions.create(
            model=MODEL, messages=USER, extra_body={"moa_max_cost_usd": 1.0}
        )
    assert refused.value.code == "price_unknown"
    assert "fake:a" in refused.value.message


def test_the_cost_metric_adds_up_what_runs_spent(upstream: FakeUpstream, serve_moa) -> None:
    server = serve_moa(PRICED)
    for _ in range(2):
        script_run(upstream)
        client(server).chat.completions.create(model=MODEL, messages=USER)
    text = httpx.get(f"{server.url}/metrics").text
    (line,) = [
        ln for ln in text.splitlines() if ln.startswith('moa_cost_usd_total{model="test-moa"}')
    ]
    assert float(line.split()[-1]) == pytest.approx(2 * 0.00285)


def test_models_carry_each_recipes_capabilities(serve_moa) -> None:
    server = serve_moa(PRICED)
    (entry,) = httpx.get(f"{server.url}/v1/models").json()["data"]
    assert entry["capabilities"]["streaming"] is True
    assert entry["capabilities"]["responses"] is True
    assert entry["capabilities"]["tools"] is False
    assert entry["moa"]["proposers"] == ["fake:a", "fake:b"]
    assert (
        httpx.get(f"{server.url}/v1/models/{MODEL}").json()["capabilities"] == entry["capabilities"]
    )


SELF = """
name = "loop"
[[layers]]
models = ["me:x"]
[aggregator]
model = "me:x"
[providers.me]
base_url = "{url}"
"""


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://127.0.0.1:8000/v1", "127.0.0.1", 8000),
        ("http://localhost:8000/v1", "0.0.0.0", 8000),
        ("http://localhost/v1", "127.0.0.1", 80),
    ],
)
def test_a_recipe_whose_provider_is_this_server_is_refused(url: str, host: str, port: int) -> None:
    recipe = recipes.parse(SELF.format(url=url))
    with pytest.raises(ConfigError, match="is this server"):
        refuse_self_calls([recipe], host, port, {})


def test_another_port_or_host_is_not_this_server() -> None:
    recipe = recipes.parse(SELF.format(url="http://127.0.0.1:8001/v1"))
    refuse_self_calls([recipe], "127.0.0.1", 8000, {})
    refuse_self_calls(
        [recipes.parse(SELF.format(url="http://10.1.2.3:8000/v1"))], "127.0.0.1", 8000, {}
    )


def test_a_built_in_provider_redirected_to_this_server_is_refused() -> None:
    recipe = recipes.parse('name = "r"\n[aggregator]\nmodel = "ollama:llama3.2"\n')
    env = {"MOA_OLLAMA_BASE_URL": "http://127.0.0.1:9000/v1"}
    with pytest.raises(ConfigError, match="'ollama'"):
        refuse_self_calls([recipe], "127.0.0.1", 9000, env)


def test_moa_serve_refuses_before_listening(tmp_path) -> None:
    path = tmp_path / "loop.toml"
    path.write_text(SELF.format(url="http://127.0.0.1:8123/v1"))
    with pytest.raises(ConfigError, match="a MoA calling itself"):
        serve([str(path)], host="127.0.0.1", port=8123)
