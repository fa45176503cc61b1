"""Third-party plugins: the example package in examples/ is pip-installed (offline, into a
temporary directory, not the shared environment) and moa finds its strategy and provider."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moa import ConfigError, RecipeError, recipes, strategies

EXAMPLE = Path(__file__).parent.parent / "examples" / "moa-plugin-example"
SRC = Path(__file__).parent.parent / "src"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the example plugin is installed (`pip install --target`, no network)."""
    pytest.importorskip("wheel", reason="building the example plugin needs `wheel`")
    work = tmp_path_factory.mktemp("plugin")
    source = work / "source"  # a copy: building leaves build/ and *.egg-info behind
    shutil.copytree(EXAMPLE, source)
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def run_with_plugin(plugin_path: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), str(SRC)])}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_installed_plugin_adds_a_strategy_and_a_provider(plugin_path: Path) -> None:
    out = run_with_plugin(
        plugin_path,
        """
        from moa import Aggregator, MoA, ProposalLayer, Registry, recipes, strategies

        print(sorted(strategies.names()))
        print("echo" in Registry().names)
        recipe = recipes.parse(
            '[[layers]]\\nmodels = ["echo:a", "echo:b"]\\n'
            '[aggregator]\\nmodel = "echo:agg"\\nstrategy = "longest"\\n'
        )
        result = recipes.build(recipe).run("hello plugin")
        print(result.text, "|", result.notes, "|", [c.role for c in result.calls])
        """,
    )
    names, has_echo, answer = out.strip().splitlines()
    assert "longest" in names and "synthesize" in names
    assert has_echo == "True"
    assert answer == ("hello plugin | ['longest: proposal 1 (echo:a)'] | ['proposer', 'proposer']")


def test_without_the_plugin_its_names_are_unknown_and_say_what_exists() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'longest' — use one of analysis"):
        strategies.get("longest")
    with pytest.raises(RecipeError, match="unknown strategy 'longest' — use one of"):
        recipes.parse('[aggregator]\nmodel = "local:smollm2"\nstrategy = "longest"')
