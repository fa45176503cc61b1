"""Run the benchmark suite: `python -m benchmarks.run [--quick] [--only 1,3] [--out FILE]`.

Prints one table and writes every figure (with the raw samples) as JSON. Rows are numbered as
in issue #5. Row 4 measures LiteLLM's proxy as its peer when it finds the executable
(`--litellm PATH`, else $LITELLM_BIN, else /tmp/litellm-venv/bin/litellm, else PATH;
`--litellm none` skips it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks.common import RowResult

ROWS: dict[str, str] = {
    "1": "benchmarks.rows.critical_path",
    "2": "benchmarks.rows.tail",
    "3": "benchmarks.rows.overhead",
    "4": "benchmarks.rows.server",
    "5": "benchmarks.rows.batch",
    "6": "benchmarks.rows.local_model",
    "7": "benchmarks.rows.layers_shown",
    "8": "benchmarks.rows.startup",
    "9": "benchmarks.rows.shared",
    "10": "benchmarks.rows.staircase",
    "11": "benchmarks.rows.levers",
    "12": "benchmarks.rows.batched",
    "13": "benchmarks.rows.batch_api",
    "14": "benchmarks.rows.queue",
    "15": "benchmarks.rows.invocation",
    "16": "benchmarks.rows.tracing",
}


def run_row(number: str, quick: bool) -> RowResult:
    module_name = ROWS[number]
    module = importlib.import_module(module_name)
    started = time.monotonic()
    try:
        result: RowResult = module.run(quick=quick)
    except ImportError as error:  # e.g. the `local` extra is missing for row 6
        result = RowResult(number, module_name, skipped=f"{type(error).__name__}: {error}")
    result.params["row_seconds"] = round(time.monotonic() - started, 1)
    return result


def render(results: list[RowResult]) -> str:
    lines = [f"{'row':<4}{'metric':<44}{'value':>14}  {'goal':<10}met"]
    lines.append("-" * len(lines[0]) + "-" * 4)
    for r in results:
        lines.append(f"{r.row:<4}{r.title}")
        if r.skipped:
            lines.append(f"{'':<4}  skipped: {r.skipped}")
            continue
        for m in r.metrics:
            met = "" if m.met is None else ("yes" if m.met else "NO")
            lines.append(f"{'':<4}  {m.name:<42}{m.fmt():>14}  {m.goal or '':<10}{met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    parser.add_argument("--only", help="comma-separated rows, e.g. 1,3 (default: all)")
    parser.add_argument("--out", default="benchmarks/results/latest.json", help="JSON output")
    parser.add_argument(
        "--litellm", help="row 4's peer: LiteLLM's executable, or `none` to skip it"
    )
    args = parser.parse_args(argv)
    if args.litellm:
        os.environ["LITELLM_BIN"] = args.litellm
    selected = args.only.split(",") if args.only else list(ROWS)
    unknown = [r for r in selected if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    results = []
    for number in selected:
        print(f"running row {number}…", file=sys.stderr, flush=True)
        results.append(run_row(number, args.quick))
    print(render(results))
    report = {
        "command": "python -m benchmarks.run "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
        },
        "rows": [r.to_dict() for r in results],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
