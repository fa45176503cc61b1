"""`moa eval quick`: each proposer alone vs the mixture, on short verifiable answers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moa.cli.app import app
from moa.evaluation import quick
from moa.testing import FakeUpstream, Reply

try:
    import llama_cpp  # noqa: F401

    from moa.providers.local import resolve_model_path

    resolve_model_path("smollm2")
    HAVE_LOCAL = True
except Exception:
    HAVE_LOCAL = False

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quick_eval.jsonl"
RECIPE = (
    'name = "trio"\n[[layers]]\nmodels = [{ model = "fake:right", seed = 1 }, '
    '{ model = "fake:wrong", temperature = 0.5 }]\n[aggregator]\nmodel = "fake:agg"\n'
)


def invoke(*args: str, tmp_path: Path):
    return CliRunner().invoke(app, list(args), env={"MOA_CACHE": str(tmp_path / "cache.sqlite")})


def test_matching_is_whole_words_after_normalising() -> None:
    assert quick.is_correct("The capital is Paris.", ["Paris"])
    assert quick.is_correct("It has EIGHT legs", ["8", "eight"])
    assert quick.is_correct("Carbon-dioxide, mostly", ["carbon dioxide"])
    assert not quick.is_correct("Parisian food", ["Paris"])
    assert not quick.is_correct("", ["Paris"])


def test_the_shipped_example_file_loads() -> None:
    items = quick.load(EXAMPLE)
    assert len(items) >= 30
    assert all(item.data["answers"] for item in items)


def test_quick_eval_scores_each_proposer_and_the_mixture(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text(
        '{"question": "Capital of France?", "answers": ["Paris"]}\n'
        '{"question": "Capital of Italy?", "answers": "Rome"}\n'
        '{"question": "Capital of Spain?", "answers": ["Madrid"]}\n'
        '{"question": "Capital of Peru?", "answers": ["Lima"]}\n'
    )
    truth = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Peru": "Lima"}

    def country(body: dict) -> str:
        return body["messages"][-1]["content"].split()[-1].rstrip("?")

    upstream.script("right", Reply(text=lambda body: f"It is {truth[country(body)]}."))
    upstream.script("wrong", Reply("It is London."))
    # The aggregator gets three of four right.
    upstream.script(
        "agg",
        Reply(text=lambda body: "London" if country(body) == "Peru" else truth[country(body)]),
    )
    done = invoke(
        "eval",
        "quick",
        "-r",
        str(recipe_file(RECIPE)),
        "--data",
        str(data),
        "--json",
        "-q",
        tmp_path=tmp_path,
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout[done.stdout.index("{") :])
    scores = {s["system"]: s for s in report["scores"]}
    assert list(scores) == ["#1 fake:right (seed=1)", "#2 fake:wrong (T=0.5)", "mixture"]
    assert [(s["correct"], s["n"]) for s in scores.values()] == [(4, 4), (0, 4), (3, 4)]
    low, high = scores["mixture"]["ci95"]
    assert low < 0.75 < high


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_LOCAL and not os.environ.get("CI"), reason="needs moa[local]")
def test_quick_eval_runs_offline_on_the_embedded_model(tmp_path: Path) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text(EXAMPLE.read_text().splitlines()[0] + "\n")
    done = invoke(
        "eval", "quick", "-r", "local", "--data", str(data), "--json", "-q", tmp_path=tmp_path
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert [s["n"] for s in report["scores"]] == [1, 1, 1, 1]  # 3 proposers + the mixture
