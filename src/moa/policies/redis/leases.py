"""Concurrency slots shared through Redis, held as leases.

A key's slots are a sorted set of lease ids scored by expiry, renewed while held. A worker
killed while holding slots stops renewing, and its slots free themselves within one lease. In
a process, one waiter at a time polls Redis for a free slot; the others queue behind it
locally, so a saturated key costs each process one poll per `poll_s`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from moa.policies.redis import scripts
from moa.policies.redis.link import Link, Unavailable


@dataclass(frozen=True, slots=True)
class Leases:
    lease_s: float = 15.0  # a dead worker's slots return within this
    poll_s: float = 0.025  # how often the head waiter asks for a free slot


class SlotLeases:
    """The leases this process holds on one key's slots (`keys`: the limiter's Redis keys)."""

    def __init__(self, link: Link, keys: dict[str, str], leases: Leases) -> None:
        self.link = link
        self.leases = leases
        self._keys = keys
        self._ids = (f"{uuid.uuid4().hex[:12]}-{os.getpid()}-{n}" for n in itertools.count())
        self._held: set[str] = set()
        self._queue: asyncio.Lock | None = None
        self._freed: asyncio.Event | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _local(self) -> tuple[asyncio.Lock, asyncio.Event]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._freed is None or self._loop is not loop:
            self._queue, self._freed, self._loop = asyncio.Lock(), asyncio.Event(), loop
            self._held.clear()
        return self._queue, self._freed

    async def acquire(self, cap: int, pace: list[Any]) -> tuple[str, list[int]]:
        """A lease on one of the key's `cap` slots, and the request's booking on the schedule
        (`pace`: see scripts.RESERVE), in one round trip."""
        queue, freed = self._local()
        lease_ms = int(self.leases.lease_s * 1000)
        keys = [self._keys["slots"], self._keys["state"], self._keys["sent"]]
        async with queue:
            while True:
                lease = next(self._ids)
                answer = await self.link.run(
                    scripts.ACQUIRE_AND_RESERVE, keys, [cap, lease_ms, lease, *pace]
                )
                if answer[0] < 0:
                    self._held.add(lease)
                    self._renew_soon()
                    return lease, answer[1:]
                freed.clear()
                # Woken early when a slot of this process frees; others are seen by polling.
                # (asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as it times out, and a cancelled waiter would poll forever.)
                with suppress(TimeoutError):
                    async with asyncio.timeout(min(self.leases.poll_s, answer[0] / 1000)):
                        await freed.wait()

    def drop(self, lease: str | None) -> None:
        if lease is None or lease not in self._held:
            return
        self._held.discard(lease)
        if self._freed is not None:
            self._freed.set()
        slots = self._keys["slots"]
        # A lost release costs nothing lasting: the lease runs out by itself.
        self.link.background(self.link.call(lambda r: r.zrem(slots, lease)))

    def _renew_soon(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        lease_ms = int(self.leases.lease_s * 1000)
        while self._held:
            await asyncio.sleep(self.leases.lease_s / 3)
            if self._held:
                with suppress(Unavailable):
                    await self.link.run(
                        scripts.RENEW, [self._keys["slots"]], [lease_ms, *self._held]
                    )
