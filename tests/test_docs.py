"""The docs are the code's: every code block of README.md and docs/**/*.md is checked against
what moa does, and the recipe reference is the one the schema writes.

- a TOML recipe parses and builds (a fragment of one, given the aggregator it leaves out);
- other TOML (a plugin's pyproject.toml) is TOML;
- Python compiles (top-level `await` allowed, as in a notebook), JSON parses;
- a `moa` command line names a real verb and only options that verb has.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main

from conftest import missing_extras
from moa import Registry, recipes
from moa.cli.app import app
from moa.evaluation.tune.run import check_config
from moa.providers.registry import BUILTIN_PROVIDERS
from moa.recipes import reference

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# Every key a built-in provider reads, plus the made-up endpoints' of the docs' own recipes.
KEYS = {
    **{c.api_key_env: "test-key" for c in BUILTIN_PROVIDERS.values() if c.api_key_env},
    "VLLM_API_KEY": "test-key",
}


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text(encoding="utf-8")):
            if lang == language:
                found.append((str(page.relative_to(ROOT)), body))
    return found


def ids(blocks: list[tuple[str, str]]) -> list[str]:
    return [f"{page}:{body.strip().splitlines()[0][:30]}" for page, body in blocks]


TOML = blocks("toml")
# `moa tune --config`: candidates' own model tables and providers, not a recipe.
TUNE_CONFIGS = [(p, b) for p, b in TOML if '[models."' in b]
RECIPES = [(p, b) for p, b in TOML if "[project" not in b and (p, b) not in TUNE_CONFIGS]
PYTHON = blocks("python")
JSON = blocks("json")
BASH = blocks("bash")


def test_the_docs_have_blocks_of_every_kind() -> None:
    assert len(RECIPES) >= 6 and PYTHON and JSON and BASH
    assert any(p.startswith("docs/") for p, _ in RECIPES)


@pytest.mark.parametrize(("page", "block"), RECIPES, ids=ids(RECIPES))
def test_every_recipe_block_parses_and_builds(page: str, block: str) -> None:
    if "[aggregator]" not in block:  # a fragment: the keys it shows, in a whole recipe
        block += '\n[aggregator]\nmodel = "openai:gpt-4o"\n'
    recipe = recipes.parse(block, page)
    mixture = recipes.build(recipe, Registry(env=KEYS))
    assert mixture.aggregator.agent.model == recipe.aggregator.model


@pytest.mark.parametrize(("page", "block"), TUNE_CONFIGS, ids=ids(TUNE_CONFIGS))
def test_every_tune_config_block_is_one_moa_tune_takes(page: str, block: str) -> None:
    tables = tomllib.loads(block)
    check_config(tables.get("models", {}), tables.get("providers", {}))


@pytest.mark.parametrize(("page", "block"), TOML, ids=ids(TOML))
def test_every_toml_block_is_toml(page: str, block: str) -> None:
    tomllib.loads(block)


@pytest.mark.parametrize(("page", "block"), PYTHON, ids=ids(PYTHON))
def test_every_python_block_compiles(page: str, block: str) -> None:
    compile(block, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


@pytest.mark.parametrize(("page", "block"), JSON, ids=ids(JSON))
def test_every_json_block_parses(page: str, block: str) -> None:
    json.loads(block)


def command_lines() -> list[tuple[str, str]]:
    """Each `moa …` command of the bash blocks, continuation lines joined, comments cut."""
    found = []
    for page, block in BASH:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            for part in re.split(r"&&|&|\|", line):
                words = part.split()
                if words and words[0] == "moa":
                    found.append((page, part.strip()))
    return found


def verb_and_options(words: list[str]) -> tuple[Any, list[str]]:
    """The (click) command a line runs, and the options it gives it. Typer bundles its own
    click, so a group is told by its `commands`."""
    command: Any = typer.main.get_command(app)
    rest = words[1:]
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command, rest = command.commands[rest[0]], rest[1:]
    if hasattr(command, "commands"):  # `moa "PROMPT"` and `moa -r x "hi"` are `moa ask`
        command = typer.main.get_command(app).commands["ask"]  # type: ignore[attr-defined]
    # `--otel` / `--no-otel` belong to every verb: main() takes them before typer parses.
    every = {"--otel", "--no-otel"}
    return command, [
        w.split("=")[0] for w in rest if w.startswith("-") and w != "-" and w not in every
    ]


COMMANDS = command_lines()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(("page", "line"), COMMANDS, ids=[f"{p}:{c[:40]}" for p, c in COMMANDS])
def test_every_moa_command_has_its_options(page: str, line: str) -> None:
    words = shlex.split(line.replace("…", "x"), posix=True)
    command, options = verb_and_options(words)
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    unknown = [o for o in options if o not in known]
    assert not unknown, f"{page}: `{line}` uses {unknown}, which `{command.name}` does not take"


def test_the_recipe_reference_is_the_schemas() -> None:
    committed = (ROOT / "docs" / "reference" / "recipe.md").read_text(encoding="utf-8")
    assert committed == reference.render(), (
        "run `python -m moa.recipes.reference > docs/reference/recipe.md` and commit it"
    )


def test_the_reference_names_every_key_of_the_schema() -> None:
    page = reference.render()
    for _, _, model, _ in reference.SECTIONS:
        for name in model.model_fields:
            assert f"| `{name}` |" in page, f"{model.__name__}.{name} is not in the reference"


def test_a_key_without_a_docstring_stops_the_reference() -> None:
    docs = reference.field_docs("class Recipe:\n    name: str\n")
    with pytest.raises(LookupError, match="no docstring"):
        reference._doc(recipes.Recipe, "name", docs)


@pytest.mark.parametrize("name", recipes.builtin_names())
def test_every_builtin_recipe_builds_with_keys(name: str) -> None:
    recipe = recipes.load(name)
    if missing := missing_extras(recipe):
        pytest.skip(f"{name} needs moa[{','.join(missing)}], which `.[local,dev]` does not install")
    recipes.build(recipe, Registry(env=KEYS))
