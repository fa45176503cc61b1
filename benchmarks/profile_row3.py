"""Where row 3's CPU goes: `python -m benchmarks.profile_row3 [RUNS] [--out FILE.prof]`.

Row 3's MoA run (4 proposers + a streamed aggregator on the zero-latency rawserver in its own
process), RUNS times after a warm-up: prints this process's CPU per call (median of 5 batches)
and how many TCP connections the runs opened; with `--out`, profiles RUNS more runs with
cProfile (read it with `python -m pstats FILE.prof`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import socket
import statistics
import time
from typing import Any

from benchmarks.common import build_moa, fake_registry, raw_upstream
from benchmarks.rows.overhead import CALLS_PER_RUN, PROPOSERS

PROMPT = "What is the capital of France?"


class Connects:
    """Counts `socket.connect` calls (asyncio's `sock_connect` makes one per new connection)."""

    def __init__(self) -> None:
        self.count = 0
        self._connect = socket.socket.connect

    def __enter__(self) -> Connects:
        original = self._connect

        def counted(sock: socket.socket, address: Any) -> None:
            self.count += 1
            original(sock, address)

        socket.socket.connect = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        socket.socket.connect = self._connect  # type: ignore[method-assign]


async def _main(base_url: str, runs: int, out: str | None) -> None:
    moa = build_moa(fake_registry(base_url), [PROPOSERS], "agg")
    for _ in range(30):  # warm-up: imports, connections, caches
        await moa.arun(PROMPT)
    per_batch = max(1, runs // 5)
    cpu = []
    with Connects() as connects:
        for _ in range(5):
            started = time.process_time()
            for _ in range(per_batch):
                await moa.arun(PROMPT)
            cpu.append((time.process_time() - started) / per_batch / CALLS_PER_RUN)
    print(f"CPU per call: {1000 * statistics.median(cpu):.3f} ms (median of 5 batches)")
    print(f"TCP connections opened: {connects.count} for {5 * per_batch * CALLS_PER_RUN} calls")
    if out:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(runs):
            await moa.arun(PROMPT)
        profile.disable()
        profile.dump_stats(out)
    await moa.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_row3", description=__doc__)
    parser.add_argument("runs", type=int, nargs="?", default=300)
    parser.add_argument("--out", help="write a cProfile of RUNS more runs here")
    args = parser.parse_args()
    with raw_upstream() as up:
        asyncio.run(_main(up.base_url, args.runs, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
