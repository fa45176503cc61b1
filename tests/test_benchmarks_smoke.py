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


def test_runner_quick_batch_api_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Row 13: the same 4 + 1 batch real-time and through the Batch API, `moa batch` children
    on the fake upstream; the discount is the only difference in what it costs."""
    pytest.importorskip("fastapi")
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "13", "--out", str(out)]) == 0
    assert "Batch API / real-time cost" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    metrics = {m["name"]: m["value"] for m in row["metrics"]}
    assert metrics["same tokens both ways (1 = yes)"] == 1
    assert abs(metrics["Batch API / real-time cost"] - 0.5) < 1e-9
    assert metrics["Batch API jobs"] == 5 and metrics["Batch API rounds of jobs"] == 2
    assert metrics["Batch API real-time calls"] == 0
    assert metrics["prompts answered, Batch API"] == row["params"]["prompts"]


def test_runner_quick_queue_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Row 14: `moa batch --queue` with 1 and 4 workers on one rate-limited key, then one of 4
    killed; every prompt answered once whatever the timings."""
    from moa.testing.redis_server import RedisServer

    if not RedisServer.available():
        pytest.skip("needs redis-server")
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "14", "--out", str(out)]) == 0
    assert "1 of 4 killed: prompts lost" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    metrics = {m["name"]: m["value"] for m in row["metrics"]}
    for phase in ("1 worker", "4 workers", "1 of 4 killed"):
        assert metrics[f"{phase}: prompts lost"] == 0
        assert metrics[f"{phase}: output lines / prompts"] == 1
        assert metrics[f"{phase}: throughput / limit"] > 0
    assert metrics["SIGKILL: prompts the killed worker held"] > 0
    assert metrics["SIGKILL: time to recover"] > 0


def test_runner_invocation_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Row 15: invocation = auto answers an easy prompt in one call and convenes the panel
    for a hard one, as scripted; `always` calls all five every time."""
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "15", "--out", str(out)]) == 0
    assert "easy: calls per request, auto" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    metrics = {m["name"]: m["value"] for m in row["metrics"]}
    assert metrics["easy: calls per request, auto"] == 1
    assert metrics["easy: calls per request, always"] == 5
    assert metrics["hard: calls per request, auto"] == 6
    assert metrics["easy: trace's panel_convened as scripted (auto)"] == 1
    assert metrics["hard: trace's panel_convened as scripted (auto)"] == 1


def test_runner_quick_tracing_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Row 16: the same runs with tracing off, on (exported over OTLP to the collector in the
    upstream's process) and sampled, side by side."""
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "16", "--out", str(out)]) == 0
    assert "tracing on / off" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    metrics = {m["name"]: m for m in row["metrics"]}
    assert metrics["spans exported per run"]["value"] == 8  # workflow, layer, aggregate, 5 calls
    ratio = metrics["tracing on / off"]
    assert ratio["goal"] == "<= 1.05" and isinstance(ratio["met"], bool)
    for name in ("CPU per call, tracing off", "CPU per call, tracing on, every span exported"):
        assert metrics[name]["unit"] == "ms" and metrics[name]["value"] > 0
