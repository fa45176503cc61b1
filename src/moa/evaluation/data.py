"""Where the benchmark data lives, and reading it.

The data (AlpacaEval instructions and judge prompt, MT-Bench questions, references and judge
prompts) is not shipped with moa: it is read at run time from `--data-dir`, else `MOA_DATA_DIR`,
else `../shared/data` beside the source checkout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from moa.errors import ConfigError
from moa.evaluation.jsonl import read_jsonl

# src/moa/evaluation/data.py -> the repository root is three levels above this package.
_REPO_ROOT = Path(__file__).resolve().parents[3]


def data_dir(option: str | Path | None = None) -> Path:
    chosen = option or os.environ.get("MOA_DATA_DIR")
    path = Path(chosen).expanduser() if chosen else _REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        raise ConfigError(
            f"benchmark data not found at {path} — pass --data-dir or set MOA_DATA_DIR "
            f"to the folder holding alpaca_eval/ and mt_bench/"
        )
    return path


def need(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"benchmark file missing: {path}")
    return path


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in read_jsonl(need(path))]
