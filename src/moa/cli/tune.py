"""`moa tune DATA.jsonl -m MODEL … -o RECIPE.toml`: which mixture beats your best model on your
own data, or that none does (docs/evaluation/tune.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from moa.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    MaxTokensOpt,
    PollOpt,
    QuietOpt,
    console_for,
    report,
    stderr,
    stdout,
)
from moa.cli.guard import run_guarded, warn

if TYPE_CHECKING:
    from moa.evaluation.tune import Settings

_ModelOpt = Annotated[
    list[str],
    typer.Option("--model", "-m", help="A candidate MODEL (provider:model); repeat for more."),
]
_AggregatorsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--aggregator", "-a", help="A writing aggregator MODEL to try on the leading panels."
    ),
]


_DataArg = Annotated[Path, typer.Argument(metavar="DATA.jsonl", help="question/prompt + answers")]
_OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="The recipe TOML to write.")]
_ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="A Markdown report (and its chart, .png).")
]
_JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
_SamplesOpt = Annotated[
    int, typer.Option("--samples", "-k", min=1, help="Samples per model and prompt.")
]
_TemperatureOpt = Annotated[float, typer.Option(help="The samples' temperature.")]
_HoldoutOpt = Annotated[
    float, typer.Option(help="Share of the prompts held out to check the winner on.")
]
_SeedOpt = Annotated[int, typer.Option(help="Seed of the held-out split.")]
_MaxCallsOpt = Annotated[
    int | None,
    typer.Option("--max-calls", min=0, help="Cap on every call after the sampling pass."),
]
_BudgetOpt = Annotated[
    float | None, typer.Option(help="USD; a sampling pass whose worst case passes it is refused.")
]
_SystemOpt = Annotated[
    str | None, typer.Option(help="System prompt of every candidate (e.g. step by step).")
]
_JudgeOpt = Annotated[
    str | None,
    typer.Option(
        "--judge", help="Judge MODEL for open-ended rows: each answer against its `reference`."
    ),
]
_BatchAPIOpt = Annotated[
    bool,
    typer.Option(
        "--batch-api",
        help="Draw the samples as provider Batch API jobs (about half the price, answers "
        "within the provider's window); a rerun resumes the same jobs.",
    ),
]
_ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help='TOML: [providers.NAME] tables as in a recipe, and [models."provider:model"] '
        "tables of a candidate's own keys (system, examples, stop, max_tokens, price…).",
    ),
]


def tune(
    data: _DataArg,
    models: _ModelOpt,
    output: _OutputOpt,
    aggregators: _AggregatorsOpt = None,
    report_path: _ReportOpt = None,
    as_json: _JsonOpt = False,
    samples: _SamplesOpt = 5,
    temperature: _TemperatureOpt = 0.7,
    holdout: _HoldoutOpt = 0.3,
    seed: _SeedOpt = 0,
    max_calls: _MaxCallsOpt = None,
    budget: _BudgetOpt = None,
    max_tokens: MaxTokensOpt = None,
    system: _SystemOpt = None,
    config: _ConfigOpt = None,
    judge: _JudgeOpt = None,
    batch_api: _BatchAPIOpt = False,
    poll_every: PollOpt = 30.0,
    cache: CacheOpt = None,
    concurrency: ConcurrencyOpt = 4,
    quiet: QuietOpt = False,
) -> None:
    """Sample every candidate once, score every picking configuration from those samples,
    try the writing aggregators on the leading panels, and check the winner against the best
    member on held-out prompts. Rerun the same command to resume."""

    async def main() -> None:
        from moa.evaluation.tune import Settings

        tables = _config(config)
        settings = Settings(
            data,
            tuple(models),
            tuple(aggregators or ()),
            samples=samples,
            temperature=temperature,
            holdout=holdout,
            seed=seed,
            max_tokens=max_tokens,
            system=system,
            max_calls=max_calls,
            budget=budget,
            concurrency=concurrency,
            judge=judge,
            batch_api=batch_api,
            poll_s=poll_every,
            providers=tables.get("providers", {}),
            specs=tables.get("models", {}),
        )
        await _tune(settings, output, report_path, cache, quiet, as_json)

    run_guarded(main)


def _config(path: Path | None) -> dict[str, Any]:
    import tomllib

    from moa.errors import ConfigError

    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--config {path}: {exc}") from None


async def _tune(
    settings: Settings,
    output: Path,
    report_path: Path | None,
    cache: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    from moa.evaluation.tune import atune_to

    tuned = await atune_to(
        settings,
        output,
        report_path=report_path,
        cache=Path(cache) if cache else None,
        console=console_for(quiet),
    )
    report(tuned.found.sampling, "sampling pass")
    for note in tuned.found.notes:
        if note.startswith(("only ", "no candidate")):
            warn(note)
    for model, why in tuned.found.skipped.items():
        warn(f"{model} gave no sample and was left out: {why}")
    if as_json:
        stdout().print_json(json.dumps(tuned.summary()))
    else:
        stdout().print(tuned.headline)
    where = f" and {tuned.report}" if tuned.report else ""
    stderr().print(f"wrote {tuned.recipe}{where}")
