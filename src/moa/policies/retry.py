"""Our one retry loop: typed on status codes and Retry-After headers, never on error text."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from moa.errors import ProviderError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one call tries: attempts, total time, and the backoff between tries."""

    max_attempts: int = 4
    max_elapsed_s: float = 90.0
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0

    def delay(self, attempt: int, error: ProviderError, rng: random.Random) -> float:
        """Seconds to wait before attempt `attempt + 1` (full jitter unless the server said)."""
        if error.retry_after is not None:
            return max(0.0, error.retry_after)
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return rng.uniform(0.0, cap)


NO_RETRY = RetryPolicy(max_attempts=1)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from `retry-after-ms`, `retry-after` (seconds or an
    HTTP date) or `x-ratelimit-reset` (seconds, or a Unix time). Header names are lower-case."""
    now = time.time() if now is None else now
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    if (reset := headers.get("x-ratelimit-reset")) is not None:
        try:
            seconds = float(reset.rstrip("s"))
        except ValueError:
            return None
        # Large values are absolute Unix times, small ones are durations.
        return max(0.0, seconds - now) if seconds > 1e9 else max(0.0, seconds)
    return None


async def with_retries(
    attempt_call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[int, ProviderError, float], None] | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[T, int]:
    """Run `attempt_call` until it succeeds or the policy gives up; return (value, attempts)."""
    rng = rng or random.Random()
    started = time.monotonic()
    attempt = 1
    while True:
        try:
            return await attempt_call(), attempt
        except ProviderError as error:
            if not error.retryable or attempt >= policy.max_attempts:
                error.attempts = attempt
                raise
            wait = policy.delay(attempt, error, rng)
            if time.monotonic() - started + wait > policy.max_elapsed_s:
                error.attempts = attempt
                raise
            if on_retry is not None:
                on_retry(attempt, error, wait)
            await sleep(wait)
            attempt += 1
