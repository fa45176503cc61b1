"""The README's recipes are real recipes: they parse and build (docs never drift from code)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moa import Registry, recipes

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
TOML_BLOCKS = [b for b in re.findall(r"```toml\n(.*?)```", README, re.S) if "[aggregator]" in b]
KEYS = {
    v: "test-key"
    for v in (
        "TOGETHER_API_KEY",
        "OPENAI_API_KEY",
        "GROQ_API_KEY",
        "VLLM_API_KEY",
        "OPENROUTER_API_KEY",
    )
}


def test_the_readme_has_recipes() -> None:
    assert len(TOML_BLOCKS) >= 2


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=lambda b: b.split("\n")[0][:30])
def test_every_readme_recipe_parses_and_builds(block: str) -> None:
    recipe = recipes.parse(block, "README")
    mixture = recipes.build(recipe, Registry(env=KEYS))
    assert mixture.aggregator.agent.model == recipe.aggregator.model


@pytest.mark.parametrize("name", recipes.builtin_names())
def test_every_builtin_recipe_builds_with_keys(name: str) -> None:
    recipe = recipes.load(name)
    if name == "local":
        pytest.importorskip("llama_cpp")
    recipes.build(recipe, Registry(env=KEYS))
