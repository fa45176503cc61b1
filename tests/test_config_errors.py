"""Every configuration error fails before any call, in one line that names the fix."""

from __future__ import annotations

import pytest

from moa import (
    Aggregator,
    ConfigError,
    InputError,
    MissingAPIKeyError,
    MoA,
    ProposalLayer,
    RecipeError,
    Registry,
    UnknownProviderError,
    recipes,
)
from moa.testing import FakeUpstream


def test_missing_key_names_the_variable_before_any_call(upstream: FakeUpstream) -> None:
    with pytest.raises(MissingAPIKeyError, match="set TOGETHER_API_KEY"):
        MoA(ProposalLayer("together:some/model"), Aggregator("fake:agg"), registry=Registry(env={}))
    assert upstream.requests == []


def test_every_builtin_together_recipe_checks_its_key() -> None:
    for name in ("together-moa", "together-moa-lite", "together-classic", "together-moa-paper"):
        with pytest.raises(MissingAPIKeyError):
            recipes.build(recipes.load(name), Registry(env={}))


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(UnknownProviderError, match=r"unknown provider 'nope'.*together"):
        MoA(Aggregator("nope:model"), registry=Registry(env={}))


def test_a_model_without_provider_prefix_is_rejected() -> None:
    with pytest.raises(ConfigError, match="provider:model"):
        MoA(Aggregator("gpt-4o"), registry=Registry(env={}))


@pytest.mark.parametrize("prompt", ["", "   \n", []])
def test_empty_prompts_are_input_errors(prompt, make_moa) -> None:
    with pytest.raises(InputError):
        make_moa([["a"]]).run(prompt)


def test_a_conversation_must_end_with_the_user(make_moa) -> None:
    with pytest.raises(InputError, match="end with a user message"):
        make_moa([["a"]]).run(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        )


def test_unknown_recipe_lists_the_builtins() -> None:
    with pytest.raises(RecipeError, match=r"unknown recipe 'nope'.*local"):
        recipes.load("nope")


def test_malformed_toml_names_the_file(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[aggregator\nmodel = 1", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"bad\.toml: not valid TOML"):
        recipes.load(path)


def test_unknown_keys_and_bad_values_name_the_key_path() -> None:
    with pytest.raises(RecipeError, match=r"layers\.0\.modles: unknown key"):
        recipes.parse('[[layers]]\nmodles = ["a:b"]\n[aggregator]\nmodel = "a:b"')
    with pytest.raises(
        RecipeError, match=r"defaults\.temperature: Input should be less than or equal to 2"
    ):
        recipes.parse('[defaults]\ntemperature = 7\n[aggregator]\nmodel = "a:b"')
    with pytest.raises(RecipeError, match=r"aggregator: Field required"):
        recipes.parse("[[layers]]\nmodels = ['a:b']")


def test_quorum_larger_than_the_layer_is_rejected() -> None:
    with pytest.raises(RecipeError, match="min_proposals"):
        recipes.parse(
            '[[layers]]\nmodels = ["a:b"]\nmin_proposals = 3\n[aggregator]\nmodel = "a:b"'
        )
    with pytest.raises(ConfigError, match="min_proposals"):
        ProposalLayer("a:b", min_proposals=2)


def test_a_moa_must_end_with_one_aggregator() -> None:
    with pytest.raises(ConfigError, match="ends with exactly one Aggregator"):
        MoA(ProposalLayer("fake:a"))


def test_recipe_file_with_custom_provider_runs_on_it(upstream: FakeUpstream, recipe_file) -> None:
    path = recipe_file(
        '[[layers]]\nrepeat = 2\nmodels = ["fake:a", {model = "fake:b", seed = 5}]\n'
        '[aggregator]\nmodel = "fake:agg"\nfallbacks = ["fake:backup"]\n'
    )
    mixture = recipes.build(recipes.load(path), Registry(env={}))
    assert len(mixture.layers) == 2
    result = mixture.run("q")
    assert result.text == "answer from agg"
    assert [r["seed"] for r in upstream.requests_for("b")] == [5, 5]


def test_custom_provider_key_variable_is_checked(recipe_file) -> None:
    path = recipe_file(
        '[aggregator]\nmodel = "vllm:m"\n[providers.vllm]\nbase_url = "http://127.0.0.1:1/v1"\napi_key_env = "MY_VLLM_KEY"\n'
    )
    with pytest.raises(MissingAPIKeyError, match="MY_VLLM_KEY"):
        recipes.build(recipes.load(path), Registry(env={}))


def test_registering_the_same_provider_again_keeps_its_client(
    upstream: FakeUpstream, recipe_file
) -> None:
    registry = Registry(env={})
    recipe = recipes.load(recipe_file('[aggregator]\nmodel = "fake:agg"\n'))
    recipes.build(recipe, registry)
    client = registry.provider("fake")
    recipes.register_providers(recipe, registry)
    assert registry.provider("fake") is client
