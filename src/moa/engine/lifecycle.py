"""What a MoA keeps open between calls — its registry's connection pools and, inside a `with`
block, the one event loop of its blocking calls — and the ways to end it: `close()` or `with`
from sync code, `aclose()` or `async with` from async code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:
    from moa.providers.registry import Registry

T = TypeVar("T")


class Lifecycle:
    registry: Registry
    _runner: asyncio.Runner | None = None  # the event loop of blocking calls inside `with`

    def _blocking(self, work: Coroutine[Any, Any, T]) -> T:
        """`work` run to its end from sync code. Inside a `with` block, calls share one event
        loop and its connections until the block ends; outside one, each call opens and closes
        its own (connections are bound to the loop that opened them)."""
        if self._runner is not None:
            return self._runner.run(work)

        async def once() -> T:
            try:
                return await work
            finally:
                await self.registry.aclose()

        return asyncio.run(once())

    def close(self) -> None:
        """End what blocking calls opened: their connections and their event loop."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            runner.run(self.registry.aclose())
            runner.close()

    def __enter__(self) -> Self:
        self._runner = self._runner or asyncio.Runner()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def aclose(self) -> None:
        await self.registry.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
