"""A rate limiter whose state lives in Redis, shared by every process that uses the same key.

It behaves like `moa.ratelimit.Limiter` (the same GCRA pacing of requests and tokens, the
same AIMD learning from 429s), but the schedule, the learned rate, the pause after a 429 and
the concurrency slots are in Redis, so N workers on one API key pace together as one. While
Redis is unreachable it is exactly the per-process `Limiter` it extends.

Concurrency slots are leases: a sorted set of lease ids scored by expiry, renewed while held.
A worker killed while holding slots stops renewing, and its slots free themselves within one
lease. In a process, one waiter at a time polls Redis for a free slot; the others queue
behind it locally, so a saturated key costs each process one poll per `poll_s`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from moa.errors import ProviderError
from moa.ratelimit import Limiter, RateLimit
from moa.shared import scripts
from moa.shared.link import Link, Unavailable


@dataclass(frozen=True, slots=True)
class Leases:
    lease_s: float = 15.0  # a dead worker's slots return within this
    poll_s: float = 0.025  # how often the head waiter asks for a free slot


_REBOOKINGS = 3  # then send anyway: a starved process must still make progress


def keys(key: str) -> dict[str, str]:
    """The Redis keys of one limiter; one hash tag, so one Redis Cluster slot."""
    tag = "{moa:" + key + "}"
    return {part: f"{tag}:{part}" for part in ("state", "sent", "ok", "slots")}


class RedisLimiter(Limiter):
    def __init__(
        self,
        key: str,
        limit: RateLimit,
        link: Link,
        *,
        adaptive: bool = True,
        leases: Leases = Leases(),
    ) -> None:
        super().__init__(limit, adaptive=adaptive)
        self.key = key
        self.link = link
        self.leases = leases
        self._keys = keys(key)
        # Nothing to pace, cap or learn: the limiter never needs Redis.
        self._idle = not adaptive and limit.rpm is None and limit.tpm is None
        self._idle = self._idle and limit.max_concurrency is None
        self._ids = (f"{uuid.uuid4().hex[:12]}-{os.getpid()}-{n}" for n in itertools.count())
        self._held: set[str] = set()
        self._queue: asyncio.Lock | None = None
        self._freed: asyncio.Event | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        return time.monotonic()

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        lease = None
        shared = not self._idle and self.link.usable()
        if shared:
            try:
                lease = await self._take(tokens)
            except Unavailable:
                shared = False
        if not shared:
            async with super().slot(tokens):
                yield
            return
        try:
            yield
        finally:
            self._drop(lease)

    async def _take(self, tokens: int) -> str | None:
        """A slot (when the key has a cap) and this request's turn on the shared schedule;
        both in one round trip when it can."""
        pace = [self.limit.rpm or 0, self.limit.tpm or 0, tokens]
        lease = None
        try:
            if self.limit.max_concurrency is None:
                keys = [self._keys["state"], self._keys["sent"]]
                booking = await self.link.run(scripts.RESERVE, keys, pace)
            else:
                lease, booking = await self._acquire(self.limit.max_concurrency, pace)
            await self._wait_turn(booking, pace)
        except BaseException:  # Redis lost, or cancelled while waiting: give the slot back
            self._drop(lease)
            raise
        return lease

    # -- concurrency -----------------------------------------------------------------------

    def _local(self) -> tuple[asyncio.Lock, asyncio.Event]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._freed is None or self._loop is not loop:
            self._queue, self._freed, self._loop = asyncio.Lock(), asyncio.Event(), loop
            self._held.clear()
        return self._queue, self._freed

    async def _acquire(self, cap: int, pace: list[Any]) -> tuple[str, list[int]]:
        """A lease on one of the key's slots, and a booking."""
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

    def _drop(self, lease: str | None) -> None:
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

    # -- pacing and learning -----------------------------------------------------------------

    async def _wait_turn(self, booking: list[int], pace: list[Any]) -> None:
        """Sleep until the booked turn. A process that wakes up more than one interval late
        (a busy CPU, a long GC) books again rather than send: late requests bunch up with the
        punctual ones of other workers, and the provider counts them in the same window."""
        loop = asyncio.get_running_loop()
        keys = [self._keys["state"], self._keys["sent"]]
        for _ in range(_REBOOKINGS):
            wait_ms, interval_ms = booking
            if wait_ms <= 0:
                return
            due = loop.time() + wait_ms / 1000
            await asyncio.sleep(wait_ms / 1000)
            if not interval_ms or loop.time() - due <= interval_ms / 1000:
                return
            booking = await self.link.run(scripts.RESERVE, keys, pace)

    def on_success(self, sent_at: float) -> None:
        if self._idle or not self.link.usable():
            super().on_success(sent_at)
            return
        limit = self.limit
        args = [self._age_ms(sent_at), limit.rpm or 0, limit.increase_rpm, limit.increase_fraction]
        keys = [self._keys["state"], self._keys["ok"]]
        fallback = super().on_success
        self.link.background(self.link.run(scripts.SUCCESS, keys, args), lambda: fallback(sent_at))

    def on_error(self, error: ProviderError, sent_at: float) -> None:
        if error.status_code != 429 or not self.adaptive:
            return
        if not self.link.usable():
            super().on_error(error, sent_at)
            return
        retry_ms = -1 if error.retry_after is None else int(error.retry_after * 1000)
        args = [self._age_ms(sent_at), retry_ms, self.limit.decrease, self.limit.rpm or 0]
        keys = [self._keys["state"], self._keys["ok"], self._keys["sent"]]
        fallback = super().on_error
        self.throttled += 1

        def learn_here() -> None:
            self.throttled -= 1  # counted again by the per-process limiter
            fallback(error, sent_at)

        self.link.background(self.link.run(scripts.THROTTLED, keys, args), learn_here)

    async def settled(self) -> None:
        """Wait until what this process learned (successes, 429s, releases) is in Redis."""
        await self.link.settled()

    def _age_ms(self, sent_at: float) -> int:
        return max(0, int((self.now() - sent_at) * 1000))
