"""The benchmark runner runs: its quickest mode on the cheap overhead row and on the server row
(structure only; timings are never asserted — these machines are noisy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

run = pytest.importorskip("benchmarks.run")


def test_runner_quick_overhead_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "3", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "moa CPU per call" in table
    report = json.loads(out.read_text())
    rows = {r["row"]: r for r in report["rows"]}
    assert set(rows) == {"3"}
    metrics = {m["name"]: m for m in rows["3"]["metrics"]}
    per_call = metrics["moa CPU per call"]
    assert per_call["unit"] == "ms" and per_call["goal"] == "<= 1"
    assert isinstance(per_call["value"], float) and per_call["value"] > 0
    assert isinstance(per_call["met"], bool)


def test_runner_quick_server_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 4: upstream and `moa serve` as child processes, a few streamed requests each. The
    LiteLLM peer is left out here (it is measured only when present, by the full run), so the
    smoke test is the same on every machine."""
    pytest.importorskip("fastapi")
    monkeypatch.setenv("LITELLM_BIN", "none")

    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "4", "--out", str(out)]) == 0
    assert "4 clients, moa: added TTLB p50" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    assert row["row"] == "4" and not row["skipped"]
    assert any("LiteLLM not measured" in note for note in row["notes"])
    metrics = {m["name"]: m for m in row["metrics"]}
    for target in ("direct", "moa"):
        assert metrics[f"4 clients, {target}: failed requests"]["value"] == 0
        p50 = metrics[f"4 clients, {target}: TTLB p50"]
        assert p50["unit"] == "ms" and p50["value"] > 0
    added = metrics["4 clients, moa: added TTLB p50"]
    assert added["goal"] is None  # the goal applies at 64 and 256 clients only
    assert isinstance(metrics["4 clients, moa: server CPU per request"]["value"], float)


def test_runner_quick_startup_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Row 8: fresh processes of bare python, `import moa`, `moa --help`, `moa recipes`, and
    `moa ask` timed to its first request at a fake upstream."""
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "8", "--out", str(out)]) == 0
    assert "moa --help: added over bare python" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    assert row["row"] == "8" and not row["skipped"]
    metrics = {m["name"]: m for m in row["metrics"]}
    for command in ("bare python", "import moa", "moa --help", "moa recipes"):
        assert metrics[f"{command}: wall"]["unit"] == "s"
        assert metrics[f"{command}: wall"]["value"] > 0
    assert metrics["moa --help: added over bare python"]["goal"] == "<= 0.3"
    assert metrics["moa recipes: added over bare python"]["goal"] == "<= 0.3"
    first = metrics["moa ask: first upstream request after spawn"]
    assert first["goal"] == "<= 0.5" and first["value"] > 0
    assert len(row["raw"]["moa ask"]) == 2


def test_runner_quick_tracing_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Row 13: the same runs with tracing off, on (exported over OTLP to the collector in the
    upstream's process) and sampled, side by side."""
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "13", "--out", str(out)]) == 0
    assert "tracing on / off" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    metrics = {m["name"]: m for m in row["metrics"]}
    assert metrics["spans exported per run"]["value"] == 8  # workflow, layer, aggregate, 5 calls
    ratio = metrics["tracing on / off"]
    assert ratio["goal"] == "<= 1.05" and isinstance(ratio["met"], bool)
    for name in ("CPU per call, tracing off", "CPU per call, tracing on, every span exported"):
        assert metrics[name]["unit"] == "ms" and metrics[name]["value"] > 0
