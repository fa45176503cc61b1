"""The virtual-time loop the timing tests stand on: timers jump, deadlocks raise."""

from __future__ import annotations

import asyncio

import pytest

from moa.testing.virtual_time import run_virtual


def test_an_hour_of_sleeping_tasks_runs_at_once_in_timer_order() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        woke: list[tuple[str, float]] = []

        async def nap(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            woke.append((name, loop.time()))

        await asyncio.gather(nap("hour", 3600), nap("minute", 60), nap("second", 1))
        return woke

    assert run_virtual(main()) == [("second", 1.0), ("minute", 60.0), ("hour", 3600.0)]


def test_timeouts_fire_in_virtual_time() -> None:
    async def main() -> float:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), timeout=2.5)
        return asyncio.get_running_loop().time()

    assert run_virtual(main()) == 2.5


def test_a_wait_nothing_can_end_raises_instead_of_hanging() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(RuntimeError, match="every task is waiting and no timer is set"):
        run_virtual(main())
