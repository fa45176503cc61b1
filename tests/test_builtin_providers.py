"""Every built-in provider, as a user reaches it: `name:model` with its key variable set, its
endpoint moved onto the fake upstream by MOA_<NAME>_BASE_URL; a missing key named before any
call; what it declares it refuses never sent; and `moa providers` listing them all."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from moa import Agent, Aggregator, Done, MissingAPIKeyError, MoA, ProposalLayer, Registry, Result
from moa.providers.registry import BUILTIN_PROVIDERS
from moa.testing import FakeUpstream
from moa.types import Sampling

# provider → its key variable (None: a local server that needs none), as the docs promise.
KEYS = {
    "together": "TOGETHER_API_KEY",
    "openai": "OPENAI_API_KEY",
    "groq": "GROQ_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "xai": "XAI_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "sambanova": "SAMBANOVA_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
    "ollama": None,
    "lmstudio": None,
    "vllm": None,
    "llamacpp": None,
}
HOSTED = sorted(name for name, key in KEYS.items() if key)


def env_for(name: str, upstream: FakeUpstream) -> dict[str, str]:
    env = {f"MOA_{name.upper()}_BASE_URL": upstream.base_url}
    if (key := KEYS[name]) is not None:
        env[key] = f"secret-of-{name}"
    return env


@pytest.mark.parametrize("name", sorted(KEYS))
def test_each_builtin_answers_at_its_moved_endpoint_with_its_key(
    name: str, upstream: FakeUpstream
) -> None:
    assert BUILTIN_PROVIDERS[name].api_key_env == KEYS[name]
    moa = MoA(Aggregator(f"{name}:some-model"), registry=Registry(env=env_for(name, upstream)))
    assert moa.run("q").text == "answer from some-model"
    [call] = upstream.calls
    assert call.api_key == (f"secret-of-{name}" if KEYS[name] else "not-needed")


@pytest.mark.parametrize("name", HOSTED)
def test_a_missing_key_names_its_variable_before_any_call(
    name: str, upstream: FakeUpstream
) -> None:
    env = env_for(name, upstream)
    del env[str(KEYS[name])]
    with pytest.raises(MissingAPIKeyError, match=f"set {KEYS[name]}"):
        MoA(Aggregator(f"{name}:m"), registry=Registry(env=env))
    assert upstream.requests == []


@pytest.mark.parametrize(("name", "port"), [("lmstudio", 1234), ("vllm", 8000), ("llamacpp", 8080)])
def test_local_servers_are_at_their_default_ports(name: str, port: int) -> None:
    url = urlsplit(BUILTIN_PROVIDERS[name].base_url)
    assert (url.hostname, url.port, url.path) == ("localhost", port, "/v1")


@pytest.mark.parametrize("name", sorted(KEYS))
def test_a_seed_and_stream_options_reach_only_a_provider_that_takes_them(
    name: str, upstream: FakeUpstream
) -> None:
    """Mistral answers 422 to either; an API that ignores one is not sent it. A stream sent no
    stream_options gets its usage from its chunks, or an estimate (the fake sends none)."""
    takes = BUILTIN_PROVIDERS[name].capabilities
    moa = MoA(
        ProposalLayer(Agent(f"{name}:p", Sampling(seed=5))),
        Aggregator(f"{name}:agg"),
        registry=Registry(env=env_for(name, upstream)),
    )

    async def streamed_run() -> Result:
        async for event in moa.stream("q"):  # the aggregator streamed, as a client reading it
            if isinstance(event, Done):
                return event.result
        raise AssertionError("no Done")

    result = asyncio.run(streamed_run())
    [proposal], [streamed] = upstream.requests_for("p"), upstream.requests_for("agg")
    assert ("seed" in proposal) is takes.seed
    assert streamed["stream"] is True
    assert ("stream_options" in streamed) is takes.stream_usage
    assert result.calls[-1].usage.estimated is not takes.stream_usage


def test_moa_providers_lists_each_with_its_key_state_and_never_the_key(
    upstream: FakeUpstream,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"MISTRAL_API_KEY": "sk-do-not-print", "MOA_VLLM_BASE_URL": upstream.base_url}
    done = subprocess.run(
        [sys.executable, "-m", "moa.cli.app", "providers"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:] if line}
    assert "sk-do-not-print" not in done.stdout
    assert rows["mistral"][1:] == ["https://api.mistral.ai/v1", "MISTRAL_API_KEY", "set"]
    assert rows["anthropic"][-2:] == ["not", "set"]
    assert rows["vllm"][1:] == [
        upstream.base_url,
        "(from",
        "MOA_VLLM_BASE_URL)",
        "—",
        "none",
        "needed",
    ]
    assert rows["local"][-2:] == ["none", "needed"]
    assert set(KEYS) <= set(rows)


PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "providers.md"


def test_the_capabilities_table_on_the_providers_page_is_the_declarations() -> None:
    from moa.providers.local.provider import LOCAL_CAPABILITIES

    rows = {
        cells[0].strip("`"): cells[1:]
        for line in PAGE.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 9
    }
    declared = {"local": LOCAL_CAPABILITIES} | {
        name: config.capabilities for name, config in BUILTIN_PROVIDERS.items()
    }
    assert set(rows) == set(declared)
    for name, caps in declared.items():
        flags = [caps.tools, caps.json_schema, caps.logprobs, caps.n, caps.seed, caps.stream_usage]
        assert rows[name][:6] == ["yes" if f else "no" for f in flags], name
        assert rows[name][6] == caps.continuation, name
        batch = caps.batch_api
        assert (rows[name][7] == "—") is (batch is None), name
        if batch is not None:
            assert rows[name][7].startswith(f"{batch.max_requests:,} / "), name
            assert rows[name][7].endswith(f", {round(batch.discount * 100)}% off"), name


def test_the_moa_providers_output_on_the_providers_page_is_a_real_run() -> None:
    text = PAGE.read_text(encoding="utf-8")
    shown = text.split("$ moa providers\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env = {k: v for k, v in env.items() if not k.startswith("MOA_")}
    env |= {"TOGETHER_API_KEY": "...", "MOA_VLLM_BASE_URL": "http://gpu-box:8000/v1"}
    done = subprocess.run(
        [sys.executable, "-m", "moa.cli.app", "providers"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.stdout == shown
