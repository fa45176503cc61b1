"""`moa eval quick`: each proposer alone vs the mixture, on short verifiable answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import needs_local
from moa import recipes, strategies
from moa.cli.app import app
from moa.evaluation import compare, deceptive, quick
from moa.strategies.synthesize import Synthesize
from moa.testing import FakeUpstream, Reply

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
    rows = [(r["entrant"], r["system"], r["correct"], r["n"]) for r in report["scores"]]
    assert rows == [
        ("baseline: fake:right alone, T=0", "mixture", 4, 4),
        ("trio", "#1 fake:right (seed=1)", 4, 4),
        ("trio", "#2 fake:wrong (T=0.5)", 0, 4),
        ("trio", "mixture", 3, 4),
    ]
    mixture = report["scores"][-1]
    low, high = mixture["ci95"]
    assert low < 0.75 < high
    # Paired with the baseline on the same four questions: one lost, none gained.
    assert mixture["vs_baseline"]["gained"] == 0
    assert mixture["vs_baseline"]["lost"] == 1
    assert mixture["vs_baseline"]["difference"] == pytest.approx(-0.25)
    assert mixture["calls_per_question"] == 3
    assert report["scores"][0]["calls_per_question"] == 1
    # The baseline is the first proposer's model asked plainly at temperature 0: no seed,
    # no system prompt, no references.
    plain = [b for b in upstream.requests_for("right") if b.get("temperature") == 0]
    assert len(plain) == 4
    assert all(b["messages"] == [b["messages"][-1]] for b in plain)
    assert all("seed" not in b for b in plain)


class Echo(Synthesize):
    """A second strategy to pick by name (synthesize under another name)."""

    name = "echo"


def test_quick_eval_runs_a_recipe_once_per_strategy(
    upstream: FakeUpstream, recipe_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(strategies.BUILTIN, "echo", Echo)
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "Capital of Peru?", "answers": ["Lima"]}\n')
    upstream.script("right", Reply("Lima."))
    upstream.script("wrong", Reply("London."))
    upstream.script("agg", Reply("Lima."))
    done = invoke(
        "eval", "quick", "-r", str(recipe_file(RECIPE)), "--data", str(data),
        "--strategy", "synthesize", "--strategy", "echo", "--json", "-q", "-o",
        str(tmp_path / "runs"), tmp_path=tmp_path,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout[done.stdout.index("{") :])
    entrants = list(dict.fromkeys(r["entrant"] for r in report["scores"]))
    assert entrants == ["baseline: fake:right alone, T=0", "trio [synthesize]", "trio [echo]"]
    kept = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert kept == [
        "baseline_fake_right_alone_T_0.jsonl",
        "trio_echo.jsonl",
        "trio_synthesize.jsonl",
    ]


def test_deceptive_mode_replaces_one_proposer_with_a_confident_liar(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text(
        '{"question": "Capital of Peru?", "answers": ["Lima"]}\n'
        '{"question": "Capital of Chile?", "answers": ["Santiago"]}\n'
    )
    truth = {"Peru": "Lima", "Chile": "Santiago"}

    def country(body: dict) -> str:
        return body["messages"][-1]["content"].split()[-1].rstrip("?")

    upstream.script("right", Reply(text=lambda body: f"{truth[country(body)]}."))
    upstream.script("wrong", Reply("London."))
    # An aggregator that believes whoever sounds surest.
    upstream.script(
        "agg",
        Reply(
            text=lambda body: (
                "Santiago"
                if "definitely Santiago" in json.dumps(body)
                else "Lima"
                if "definitely Lima" in json.dumps(body)
                else truth[country(body)]
            )
        ),
    )
    done = invoke(
        "eval", "quick", "-r", str(recipe_file(RECIPE)), "--data", str(data),
        "--deceptive", "--json", "-q", tmp_path=tmp_path,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout[done.stdout.index("{") :])
    rows = {(r["entrant"], r["system"]): r for r in report["scores"]}
    assert rows[("trio", "mixture")]["correct"] == 2
    liar = rows[("trio + deceptive", "#2 deceptive:liar")]
    assert liar["correct"] == 0 and liar["deceptive"]
    assert rows[("trio + deceptive", "#1 fake:right (seed=1)")]["correct"] == 2
    assert rows[("trio + deceptive", "mixture")]["correct"] == 0
    assert rows[("trio + deceptive", "mixture")]["vs_baseline"]["lost"] == 2
    # The liar never reached the upstream: it is an in-process provider.
    assert upstream.requests_for("liar") == []


def test_the_liar_never_gives_an_accepted_answer() -> None:
    questions = [
        ("How many legs does a spider have?", ["8", "eight"]),
        ("How many legs does an octopus have?", ["8", "eight"]),
        ("Capital of Korea?", ["Seoul"]),
        ("Capital of South Korea?", ["Seoul"]),
    ]
    wrong = deceptive.wrong_answers(questions)
    assert wrong["How many legs does a spider have?"] == "Seoul"
    assert all(not quick.is_correct(wrong[q], a) for q, a in questions)
    liar = deceptive.DeceptiveProvider(
        {"Capital of Korea?": "Paris", "Capital of South Korea?": "Rome"}
    )
    said = liar.answer([{"role": "user", "content": "Capital of South Korea?"}])
    assert said == "The answer is definitely Rome. I am completely certain of this."


def test_a_single_proposer_keeps_its_place_beside_the_liar() -> None:
    one = recipes.parse(
        'name = "solo"\n[[layers]]\nmodels = ["fake:a"]\n[aggregator]\nmodel = "fake:b"\n'
    )
    models = deceptive.with_deceiver(one).layers[0].models
    assert [m if isinstance(m, str) else m.model for m in models] == ["fake:a", "deceptive:liar"]
    alone = recipes.parse('name = "alone"\n[aggregator]\nmodel = "fake:b"\n')
    assert compare.baseline_recipe(alone).aggregator.model == "fake:b"
    assert compare.baseline_recipe(alone).layers == []


@pytest.mark.local_model
@needs_local
def test_quick_eval_runs_offline_on_the_embedded_model(tmp_path: Path) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text(EXAMPLE.read_text().splitlines()[0] + "\n")
    done = invoke(
        "eval", "quick", "-r", "local", "--data", str(data), "--json", "-q", tmp_path=tmp_path
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout[done.stdout.index("{") :])
    # the baseline, then each layer-1 proposal of the recipe (its samples too), then the mixture
    scores = report["scores"]
    assert len(scores) >= 2 + len(recipes.load("local").layers[0].models)
    assert all(s["n"] == 1 for s in scores)
    assert scores[0]["entrant"].startswith("baseline: local:smollm2")
    assert scores[-1]["system"] == "mixture"
