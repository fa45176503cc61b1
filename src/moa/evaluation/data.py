"""Where the benchmark data lives, and reading it.

The data moa's evaluations read (AlpacaEval instructions and annotator prompt, MT-Bench
questions, references and judge prompts) ships inside the package, in `datasets/`, with each
set's origin and licence in a NOTICE.md beside it. `--data-dir`, else `MOA_DATA_DIR`, points
at another folder with the same layout (`alpaca_eval/`, `mt_bench/`) instead.
"""

from __future__ import annotations

import os
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from moa.batch.jsonl import read_jsonl
from moa.errors import ConfigError


def shipped() -> Traversable:
    """The data shipped with moa (a Traversable: it may sit inside a zip)."""
    return files("moa.evaluation") / "datasets"


def data_dir(option: str | Path | None = None) -> Traversable:
    chosen = option or os.environ.get("MOA_DATA_DIR")
    if not chosen:
        return shipped()
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "--data-dir" if option else "MOA_DATA_DIR"
        raise ConfigError(
            f"benchmark data not found at {path} ({source}) — point it at a folder holding "
            f"alpaca_eval/ and mt_bench/, or unset it to use the data shipped with moa"
        )
    return path


def need(path: Traversable) -> Traversable:
    if not path.is_file():
        raise ConfigError(f"benchmark file missing: {path}")
    return path


def load_jsonl(path: Traversable) -> list[dict[str, Any]]:
    return [row for _, row in read_jsonl(need(path))]
