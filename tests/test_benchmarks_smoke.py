"""The benchmark runner runs: its quickest mode on the cheap overhead row (structure only;
timings are never asserted — these machines are noisy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

run = pytest.importorskip("benchmarks.run")


def test_runner_quick_overhead_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "3,4", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "moa CPU per call" in table
    assert "row 4: needs `moa serve`" in table
    report = json.loads(out.read_text())
    rows = {r["row"]: r for r in report["rows"]}
    assert set(rows) == {"3", "4"}
    assert rows["4"]["skipped"]
    metrics = {m["name"]: m for m in rows["3"]["metrics"]}
    per_call = metrics["moa CPU per call"]
    assert per_call["unit"] == "ms" and per_call["goal"] == "<= 1"
    assert isinstance(per_call["value"], float) and per_call["value"] > 0
    assert isinstance(per_call["met"], bool)
