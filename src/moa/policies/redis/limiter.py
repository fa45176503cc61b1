"""A rate limiter whose state lives in Redis, shared by every process that uses the same key.

It behaves like `moa.policies.ratelimit.Limiter` (the same GCRA pacing of requests and tokens, the
same AIMD learning from 429s), but the schedule, the learned rate, the pause after a 429 and
the concurrency slots are in Redis, so N workers on one API key pace together as one. While
Redis is unreachable it is exactly the per-process `Limiter` it extends.

Concurrency slots are leases that free themselves when a worker dies (moa.policies.redis.leases).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from moa import telemetry
from moa.errors import ProviderError
from moa.policies.ratelimit import Limiter, RateLimit
from moa.policies.redis import scripts
from moa.policies.redis.leases import Leases, SlotLeases
from moa.policies.redis.link import Link, Unavailable

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
        leases: Leases = Leases(),  # noqa: B008 (frozen: one shared default is safe)
    ) -> None:
        super().__init__(limit, adaptive=adaptive)
        self.key = key
        self.link = link
        self.leases = leases
        self._keys = keys(key)
        # Nothing to pace, cap or learn: the limiter never needs Redis.
        self._idle = not adaptive and limit.rpm is None and limit.tpm is None
        self._idle = self._idle and limit.max_concurrency is None
        self._shared_slots = SlotLeases(link, self._keys, leases)

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
            self._shared_slots.drop(lease)

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
                lease, booking = await self._shared_slots.acquire(self.limit.max_concurrency, pace)
            await self._wait_turn(booking, pace)
        except BaseException:  # Redis lost, or cancelled while waiting: give the slot back
            self._shared_slots.drop(lease)
            raise
        return lease

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
            telemetry.waited(wait_ms / 1000, "pace")
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
