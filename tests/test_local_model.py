"""End to end on the real embedded model (SmolLM2-135M), offline."""

from __future__ import annotations

import os

import pytest

from moa import Done, Sampling, Token, recipes
from moa.providers.local import resolve_model_path

try:
    import llama_cpp  # noqa: F401

    resolve_model_path("smollm2")
    HAVE_LOCAL = True
except Exception:
    HAVE_LOCAL = False

# CI installs the `local` extra: there a missing model is a failure, not a skip.
pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not HAVE_LOCAL and not os.environ.get("CI"), reason="needs moa[local]"),
]


async def test_the_local_recipe_answers_offline_and_streams() -> None:
    mixture = recipes.build(recipes.load("local"))
    tokens: list[str] = []
    result = None
    async for event in mixture.stream("Name one planet.", sampling=Sampling(max_tokens=24)):
        if isinstance(event, Token):
            tokens.append(event.text)
        elif isinstance(event, Done):
            result = event.result
    await mixture.aclose()
    assert result is not None
    assert len(result.proposals(1)) == 3 and all(c.ok for c in result.proposals(1))
    assert result.text.strip() and result.text == "".join(tokens)
    assert all(0 < c.usage.output_tokens <= 24 for c in result.calls)
    assert result.usage.input_tokens > 0


async def test_a_prompt_over_the_window_is_a_context_length_error_not_malformed() -> None:
    from moa.errors import ContextLengthError
    from moa.providers.local import LocalProvider
    from moa.types import ChatRequest, Message

    provider = LocalProvider(n_ctx=256)
    request = ChatRequest("smollm2", (Message(role="user", content="word " * 600),), Sampling())
    with pytest.raises(ContextLengthError):
        await provider.complete(request)


def test_the_local_profile_counts_with_the_models_own_tokenizer() -> None:
    from moa.budget import estimate_tokens
    from moa.providers.local import LocalProvider

    profile = LocalProvider().profile("smollm2")
    text = "The capital of France is Paris."
    assert 0 < profile.count_tokens(text) != estimate_tokens(text)
    assert profile.system_role  # SmolLM2's template has one
