"""`moa tune` from Python: run the tuning, then write the recipe, the report and its chart.

from moa.evaluation.tune import Settings, tune_to
tuned = tune_to(Settings(Path("qa.jsonl"), ("groq:llama-3.1-8b-instant", "local:smollm2")),
                Path("tuned.toml"), report=Path("tuned.md"))
print(tuned.headline)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from moa import recipes
from moa.evaluation.judge import Judge
from moa.evaluation.tune import report
from moa.evaluation.tune.found import Found, Settings
from moa.evaluation.tune.grade import JUDGE_MAX_TOKENS, ByJudge, Grader, by_answers
from moa.evaluation.tune.recipe import Candidate
from moa.evaluation.tune.run import tune
from moa.policies.cache import ResponseCache, default_path
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe


@dataclass(frozen=True, slots=True)
class Tuned:
    found: Found
    verdict: report.Verdict
    recipe: Path
    report: Path | None
    chart: Path | None

    @property
    def headline(self) -> str:
        return report.headline(self.found, self.verdict)

    def summary(self) -> dict[str, Any]:
        """What `--json` prints."""
        f = self.found
        return {
            "verdict": "mixture" if self.verdict.wins else "best member",
            "headline": self.headline,
            "recipe": str(self.recipe),
            "report": str(self.report) if self.report else None,
            "dev": len(f.dev),
            "heldout": len(f.held),
            "skipped_models": f.skipped,
            "configurations_scored": len(f.scores),
            "writers_tried": len(f.written),
            "calls": {
                "sampling": report.sampling_calls(f),
                "after_sampling": f.calls_after_sampling,
                "one_by_one": report.one_by_one_calls(f),
            },
            "heldout_rows": report.heldout_rows(f, self.verdict),
            "configurations": {
                name: _config(candidate)
                for name, candidate in [("chosen", f.chosen), *f.baselines.items()]
                if candidate is not None
            },
            "notes": f.notes,
        }


def _config(candidate: Candidate) -> dict[str, Any]:
    """A candidate as data: its panel, how it picks (or who writes), its rounds."""
    config, rounds = candidate.config, candidate.config.rounds
    return {
        "members": [[m.model, m.draws] for m in config.members],
        "strategy": config.strategy,
        "rounds": None if rounds is None else [rounds.first, rounds.size, rounds.stop_share],
        "writer": None if candidate.writer is None else asdict(candidate.writer),
    }


def work_folder(output: Path) -> Path:
    """`tuned.toml`'s samples and runs live in `tuned.tune/`."""
    return output.parent / f"{output.stem}.tune"


async def atune_to(
    settings: Settings,
    output: Path,
    *,
    report_path: Path | None = None,
    cache: Path | None = None,
    registry: Registry | None = None,
    console: Console | None = None,
) -> Tuned:
    """Tune, then write `output` (the recipe), and the report with its chart if asked."""
    registry = registry or Registry()
    # Always on: the written recipes' proposals are the sampling pass's calls, answered again
    # from here, so that only writers reach the upstream.
    store = ResponseCache(cache or default_path())

    def build(recipe: Recipe) -> Any:
        return recipes.build(recipe, registry, cache=store)

    grade: Grader = by_answers
    if settings.judge is not None:
        grade = ByJudge(Judge(settings.judge, registry, max_tokens=JUDGE_MAX_TOKENS, cache=store))
    try:
        found = await tune(settings, work_folder(output), build, console, grade)
    finally:
        await registry.aclose()
        await store.aclose()
    return write(found, output, report_path)


def write(found: Found, output: Path, report_path: Path | None = None) -> Tuned:
    """The recipe (the winner, or the best member alone) and, if asked, the report."""
    verdict = report.verdict(found)
    output.write_text(report.recipe_text(found, verdict, output.stem), encoding="utf-8")
    recipes.load(output)  # what was written loads with -r, or this is a bug worth failing on
    chart = None
    if report_path is not None:
        chart = _chart(found, report_path)
        text = report.markdown(found, verdict, chart.name if chart else None)
        report_path.write_text(text, encoding="utf-8")
    tuned = Tuned(found, verdict, output, report_path, chart)
    summary = json.dumps(tuned.summary(), indent=2) + "\n"
    (work_folder(output) / "summary.json").write_text(summary, encoding="utf-8")
    return tuned


def _chart(found: Found, report_path: Path) -> Path | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        found.notes.append('no chart: matplotlib is not installed (pip install "moa[eval]")')
        return None
    path = report_path.with_suffix(".png")
    report.chart(found, path)
    return path


def tune_to(settings: Settings, output: Path, **options: Any) -> Tuned:
    """Blocking form of `atune_to`."""
    return asyncio.run(atune_to(settings, output, **options))
