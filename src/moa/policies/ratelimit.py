"""Client-side rate limits per provider and per model, adaptive (AIMD).

Each limiter paces requests/minute and tokens/minute with a GCRA bucket and caps concurrent
calls. With no configured rate, the first 429 sets one from what the server accepted before
refusing; every later 429 cuts the rate (once per burst) and pauses the limiter for the
server's Retry-After. Every success raises the rate by a small step, up to the configured
ceiling; once the rate is back near one the server refused, by about one step a minute
instead. A long batch under a 60-RPM key therefore settles just under the limit instead of
climbing over it every minute. A call cancelled while it waits for its turn hands its turn on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from moa import telemetry
from moa.errors import ProviderError


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Limits for one provider or one model; None means "no limit until a 429 teaches one"."""

    rpm: float | None = None
    tpm: float | None = None
    max_concurrency: int | None = None
    decrease: float = 0.9  # multiplicative decrease on a 429
    increase_rpm: float = 1.0  # additive increase per success ...
    increase_fraction: float = 0.003  # ... or this fraction of the ceiling (or rate), if larger


class _Bucket:
    """GCRA: a request of `cost` units is allowed at the theoretical arrival time."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.per_minute = per_minute
        self.burst_s = burst_s
        self._tat = 0.0

    def reserve(self, cost: float, now: float) -> tuple[float, float]:
        """Book `cost` units; return how long to wait before sending, and the booked interval
        (to hand back with `cancel` if the request is never sent)."""
        interval = 60.0 * cost / self.per_minute
        tat = max(self._tat, now)
        wait = max(0.0, tat - self.burst_s - now)
        self._tat = tat + interval
        return wait, interval

    def cancel(self, interval: float) -> None:
        """Give back a booking that was not used: later requests move up by its interval."""
        self._tat -= interval


class Limiter:
    def __init__(
        self,
        limit: RateLimit,
        *,
        adaptive: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.adaptive = adaptive
        self._clock = clock
        self._sleep = sleep
        self.rpm: float | None = limit.rpm
        # A burst of up to one request's interval: pacing, not lock-step.
        self._requests = _Bucket(limit.rpm, 60.0 / limit.rpm) if limit.rpm else None
        self._tokens = _Bucket(limit.tpm, 1.0) if limit.tpm else None
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._paused_until = 0.0
        self._decreased_at = float("-inf")
        self._recent: deque[float] = deque()  # send times in the last minute
        self._accepted: deque[float] = deque()  # send times of successful calls, last minute
        self._refused_rpm: float | None = None  # the rate the last cut was made at (or estimated)
        self.throttled = 0  # 429s seen

    def _semaphore(self) -> asyncio.Semaphore | None:
        # A semaphore belongs to one event loop; `MoA.run()` starts a new loop per call.
        if self.limit.max_concurrency is None:
            return None
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Semaphore(self.limit.max_concurrency), loop
        return self._slots

    def observed_rpm(self, now: float) -> float:
        while self._recent and self._recent[0] < now - 60.0:
            self._recent.popleft()
        if not self._recent:
            return 1.0
        span = max(1.0, now - self._recent[0])
        return len(self._recent) * 60.0 / span

    async def _pace(self, tokens: int) -> None:
        now = self._clock()
        if self._paused_until > now:
            telemetry.waited(self._paused_until - now, "retry_after")
            await self._sleep(self._paused_until - now)
            now = self._clock()
        booked: list[tuple[_Bucket, float]] = []
        wait = 0.0
        for bucket, cost in ((self._requests, 1), (self._tokens, tokens)):
            if bucket is not None and cost:
                bucket_wait, interval = bucket.reserve(cost, now)
                booked.append((bucket, interval))
                wait = max(wait, bucket_wait)
        if wait:
            telemetry.waited(wait, "pace")
            try:
                await self._sleep(wait)
            except BaseException:
                # Cancelled while waiting its turn (a quorum straggler, a client that left):
                # the request is never sent, so its place goes to the requests behind it.
                for bucket, interval in booked:
                    bucket.cancel(interval)
                raise
        self._recent.append(self._clock())

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        """Hold a concurrency slot for one attempt, after waiting for the pace."""
        slots = self._semaphore()
        if slots is not None:
            if slots.locked():
                queued = self._clock()
                await slots.acquire()
                telemetry.waited(self._clock() - queued, "concurrency")
            else:
                await slots.acquire()
        try:
            await self._pace(tokens)
            yield
        finally:
            if slots is not None:
                slots.release()

    def on_success(self, sent_at: float) -> None:
        self._accepted.append(sent_at)
        while self._accepted and self._accepted[0] < sent_at - 60.0:
            self._accepted.popleft()
        if self.rpm is None or self._requests is None:
            return
        ceiling = self.limit.rpm
        step = max(self.limit.increase_rpm, self.limit.increase_fraction * (ceiling or self.rpm))
        if (
            self._refused_rpm is not None
            and self.rpm >= self._refused_rpm * self.limit.decrease**0.5
        ):
            # Half way back to a rate the server refused: probe by about one step a minute,
            # not one step a call, or a long batch climbs back over the limit every minute.
            step /= max(1.0, self.rpm)
        self.rpm = self.rpm + step if ceiling is None else min(ceiling, self.rpm + step)
        self._requests.per_minute = self.rpm

    def _first_estimate(self, now: float, retry_after: float | None) -> float:
        """The rate a first 429 reveals: the server accepted what succeeded lately, and frees
        room after Retry-After, so its window spans about (time since the first of them +
        Retry-After)."""
        accepted = [t for t in self._accepted if t >= now - 60.0]
        if not accepted:
            return self.observed_rpm(now) * self.limit.decrease
        window = now - accepted[0] + (retry_after if retry_after is not None else 1.0)
        return 0.95 * len(accepted) * 60.0 / max(window, 1e-3)

    def now(self) -> float:
        return self._clock()

    def on_error(self, error: ProviderError, sent_at: float) -> None:
        """Learn from a failed call that was sent at `sent_at` (this limiter's clock)."""
        if error.status_code != 429 or not self.adaptive:
            return
        self.throttled += 1
        now = self._clock()
        if error.retry_after is not None:
            self._paused_until = max(self._paused_until, now + error.retry_after)
        if sent_at < self._decreased_at:
            # One burst answers with many 429s: cut the rate once for it, not once per reply.
            return
        self._decreased_at = now
        if self.rpm is None:
            self.rpm = max(1.0, self._first_estimate(now, error.retry_after))
            if self._accepted:
                self._refused_rpm = self.rpm
        else:
            self._refused_rpm = self.rpm
            self.rpm = max(1.0, self.rpm * self.limit.decrease)
        if self._requests is None:
            self._requests = _Bucket(self.rpm, 60.0 / self.rpm)
        self._requests.per_minute = self.rpm


# Makes the limiter of a key: (key, its limit, adaptive). `moa.policies.redis` swaps in one on
# Redis.
LimiterFactory = Callable[[str, RateLimit, bool], Limiter]


class Limits:
    """The limiters of a run, keyed by provider name and by `provider:model`."""

    def __init__(
        self,
        configured: dict[str, RateLimit] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        factory: LimiterFactory | None = None,
    ) -> None:
        self._configured = dict(configured or {})
        self._limiters: dict[str, Limiter] = {}
        self._clock = clock
        self._sleep = sleep
        self.factory = factory  # set before the first call, or limiters made earlier stay

    def configure(self, key: str, limit: RateLimit) -> None:
        self._configured[key] = limit
        self._limiters.pop(key, None)

    def get(self, key: str) -> Limiter:
        if key not in self._limiters:
            configured = self._configured.get(key)
            # Providers limit per key: a 429 teaches the provider's limiter. A model's own
            # limiter only paces when the user configured it, or 429s would be counted twice.
            adaptive = configured is not None or ":" not in key
            if self.factory is not None:
                self._limiters[key] = self.factory(key, configured or RateLimit(), adaptive)
            else:
                self._limiters[key] = Limiter(
                    configured or RateLimit(),
                    adaptive=adaptive,
                    clock=self._clock,
                    sleep=self._sleep,
                )
        return self._limiters[key]

    def for_call(self, provider: str, model: str) -> tuple[Limiter, Limiter]:
        return self.get(provider), self.get(f"{provider}:{model}")
