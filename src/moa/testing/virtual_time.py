"""An asyncio event loop whose clock jumps ahead when every task is waiting.

`asyncio.sleep`, `asyncio.wait_for` and every other timer run in virtual time: a simulated
minute of rate limiting takes milliseconds, and the same program gives the same timings on
every run. Only code that never waits on real I/O (threads, sockets, subprocesses) belongs in
it: a loop with nothing scheduled and nothing to wake it up raises instead of hanging.

    result = run_virtual(main())          # main() sees loop.time() start at 0.0
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """Polls real I/O without blocking; a wait for a timer becomes a jump of the clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError(
                "virtual time: every task is waiting and no timer is set (a deadlock, or a "
                "wait on real I/O, which does not belong in a virtual-time loop)"
            )
        self.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return float(self._jumping.now)


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion in a fresh virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
