"""Compare two versions of moa on the same benchmark rows, side by side in one run:

    python -m benchmarks.compare REV [--rows 1,3] [--rounds 3] [--quick] [--own-benchmarks]

REV (any git revision) is checked out into a temporary worktree; each round runs the rows once
with its `src/` and once with this tree's, alternating so that a busy machine slows both alike.
The benchmark code is this tree's for both, unless `--own-benchmarks`: then each version runs
its own (needed when moa's module paths moved between them; compare only rows whose code is
the same but for its imports). Prints the median of each metric per version and the ratio
this/REV.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_rows(src: Path, rows: str, quick: bool, out: Path, root: Path = ROOT) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{root}"}
    command = [sys.executable, "-m", "benchmarks.run", "--only", rows, "--out", str(out)]
    subprocess.run(
        [*command, *(["--quick"] if quick else [])],
        check=True,
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
    )
    figures: dict[str, float] = {}
    for row in json.loads(out.read_text())["rows"]:
        for metric in row.get("metrics", []):
            if isinstance(metric.get("value"), int | float):
                figures[f"{row['row']} {metric['name']}"] = float(metric["value"])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("rev")
    parser.add_argument("--rows", default="1,3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--own-benchmarks", action="store_true", help="each version its own")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), args.rev],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        try:
            samples: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
            for round_ in range(args.rounds):
                for label, tree in (("before", before), ("after", ROOT)):
                    out = Path(tmp) / f"{label}-{round_}.json"
                    root = tree if args.own_benchmarks else ROOT
                    figures = run_rows(tree / "src", args.rows, args.quick, out, root)
                    for name, value in figures.items():
                        samples[label].setdefault(name, []).append(value)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT)
    print(f"{'metric':<52}{args.rev[:10]:>12}{'this tree':>12}{'ratio':>8}")
    for name, values in samples["after"].items():
        old = statistics.median(samples["before"].get(name, [float("nan")]))
        new = statistics.median(values)
        ratio = new / old if old else float("nan")
        print(f"{name:<52}{old:>12.4g}{new:>12.4g}{ratio:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
