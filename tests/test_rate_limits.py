"""The adaptive rate limiter, in virtual time: what it paces, what it learns from 429s, and
what it gives back when a waiting call is cancelled. A simulated minute takes milliseconds."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from collections import deque

import pytest

from moa import ProviderError, RetryPolicy
from moa.errors import UpstreamStatusError
from moa.policies.ratelimit import Limiter, Limits, RateLimit
from moa.policies.retry import with_retries
from moa.testing.virtual_time import run_virtual


def throttled(retry_after: float | None = None) -> UpstreamStatusError:
    return UpstreamStatusError(
        "HTTP 429", provider="p", model="m", status_code=429, retry_after=retry_after
    )


def limiter(limit: RateLimit, **kwargs: object) -> Limiter:
    return Limiter(limit, clock=asyncio.get_running_loop().time, **kwargs)  # type: ignore[arg-type]


async def send(limiter: Limiter, tokens: int = 0) -> float:
    """One request through the limiter; the (virtual) time it was let through."""
    async with limiter.slot(tokens):
        return limiter.now()


async def send_times(limiter: Limiter, n: int, tokens: int = 0) -> list[float]:
    return [await send(limiter, tokens) for _ in range(n)]


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


# -- pacing ------------------------------------------------------------------------------------


def test_a_configured_rpm_spaces_requests_after_a_burst_of_one_interval() -> None:
    async def main() -> list[float]:
        return await send_times(limiter(RateLimit(rpm=60)), 5)

    assert run_virtual(main()) == [0.0, 0.0, 1.0, 2.0, 3.0]


def test_tokens_per_minute_space_large_requests() -> None:
    async def main() -> list[float]:
        return await send_times(limiter(RateLimit(tpm=6000)), 4, tokens=1000)

    # 1000 tokens of a 6000/min budget: one request per 10 s, after a 1 s burst allowance.
    assert run_virtual(main()) == [0.0, 9.0, 19.0, 29.0]


def test_a_model_limiter_paces_its_model_and_the_provider_limiter_is_shared() -> None:
    async def main() -> tuple[list[float], list[float]]:
        limits = Limits({"fake:slow": RateLimit(rpm=60)}, clock=asyncio.get_running_loop().time)

        async def call(model: str) -> float:
            provider, own = limits.for_call("fake", model)
            async with provider.slot(), own.slot():
                return provider.now()

        slow = [await call("slow") for _ in range(4)]
        fast = [await call("fast") for _ in range(4)]
        return slow, fast

    slow, fast = run_virtual(main())
    assert slow == [0.0, 0.0, 1.0, 2.0]
    assert fast == [2.0] * 4  # another model of the same provider is not held back


# -- learning from 429s ------------------------------------------------------------------------


def test_a_429_cuts_the_rate_once_per_burst() -> None:
    async def main() -> tuple[float | None, list[float]]:
        paced = limiter(RateLimit(rpm=60))
        sent = await send(paced)
        await asyncio.sleep(1.0)
        for _ in range(5):  # one burst, five 429s: one cut
            paced.on_error(throttled(), sent)
        return paced.rpm, gaps(await send_times(paced, 4))

    rpm, spacing = run_virtual(main())
    assert rpm == pytest.approx(54.0)
    assert spacing[1:] == [pytest.approx(60 / 54)] * 2


def test_after_a_cut_successes_win_back_half_quickly_then_probe_a_step_a_minute() -> None:
    async def main() -> list[float | None]:
        paced = limiter(RateLimit(rpm=60))
        sent = await send(paced)
        await asyncio.sleep(1.0)
        paced.on_error(throttled(), sent)
        seen = [paced.rpm]
        for _ in range(3):
            paced.on_success(paced.now())
            seen.append(paced.rpm)
        for _ in range(57):  # a minute of calls at that rate
            paced.on_success(paced.now())
        seen.append(paced.rpm)
        for _ in range(1000):
            paced.on_success(paced.now())
        return [*seen, paced.rpm]

    # Cut to 0.9 x 60; then +1 a call (the larger of 1 rpm and 0.3% of 60) up to about
    # 0.95 x 60, where the server refused not far above; then about +1 a minute; never
    # above the configured 60.
    assert run_virtual(main()) == pytest.approx([54, 55, 56, 57, 58, 60], abs=0.02)


def test_a_learnt_rate_keeps_rising_with_successes_and_the_pacing_follows() -> None:
    async def main() -> tuple[list[float], list[float]]:
        learner = limiter(RateLimit())
        learner.on_error(throttled(), learner.now())  # no history: starts from 1 rpm x 0.9
        before = gaps(await send_times(learner, 3))
        for _ in range(29):
            learner.on_success(learner.now())
        after = gaps(await send_times(learner, 3))
        return before, after

    before, after = run_virtual(main())
    assert before[-1] == pytest.approx(60.0)  # 1 rpm: the 0.9 estimate is floored at 1
    assert after[-1] == pytest.approx(2.0)  # 1 + 29 successes = 30 rpm


def test_the_first_429_estimates_the_rate_from_what_the_server_accepted() -> None:
    """20 calls accepted one a second, then a 429 asking for 40 s: the server's window held
    about 20 calls per 60 s, and the limiter settles a little under that."""

    async def main() -> tuple[float | None, list[float]]:
        learner = limiter(RateLimit())
        for _ in range(20):
            sent = await send(learner)
            learner.on_success(sent)  # unpaced: no rate is known yet
            await asyncio.sleep(1.0)
        learner.on_error(throttled(retry_after=40), learner.now())
        return learner.rpm, await send_times(learner, 3)

    rpm, after = run_virtual(main())
    assert rpm == pytest.approx(0.95 * 20 * 60 / (20 + 40))  # 19 rpm
    assert after[0] == pytest.approx(60.0)  # paused for the Retry-After
    assert gaps(after)[-1] == pytest.approx(60 / 19)


def test_a_retry_after_pauses_every_call_of_the_limiter() -> None:
    async def main() -> list[float]:
        paced = limiter(RateLimit(rpm=600))
        paced.on_error(throttled(retry_after=7.0), paced.now())
        return await send_times(paced, 2)

    first, _ = run_virtual(main())
    assert first == 7.0


def test_a_model_limiter_that_was_not_configured_does_not_learn() -> None:
    # A 429 teaches the provider's limiter; counting it on the model's too would cut twice.
    limits = Limits()
    provider, model = limits.for_call("fake", "m")
    for one in (provider, model):
        one.on_error(throttled(), 0.0)
    assert provider.rpm is not None and model.rpm is None


# -- cancellation ------------------------------------------------------------------------------


def test_a_call_cancelled_while_waiting_gives_its_booking_back() -> None:
    async def main() -> tuple[float, float]:
        paced = limiter(RateLimit(rpm=60))
        await send_times(paced, 2)  # the burst: both at 0
        straggler = asyncio.create_task(send(paced))  # booked for t=1
        await asyncio.sleep(0.5)
        straggler.cancel()  # a quorum was reached; it will never be sent
        with pytest.raises(asyncio.CancelledError):
            await straggler
        return await send(paced), await send(paced)

    # The next call takes the straggler's place at t=1, not the one after it at t=2.
    assert run_virtual(main()) == (1.0, 2.0)


def test_a_call_cancelled_while_waiting_frees_its_concurrency_slot() -> None:
    async def main() -> float:
        paced = limiter(RateLimit(rpm=60, max_concurrency=1))
        await send_times(paced, 2)
        straggler = asyncio.create_task(send(paced))
        await asyncio.sleep(0.5)
        straggler.cancel()
        await asyncio.gather(straggler, return_exceptions=True)
        return await send(paced)

    assert run_virtual(main()) == 1.0


async def test_clock_and_sleep_are_injectable_without_a_virtual_loop() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limits = Limits({"p": RateLimit(rpm=30)}, clock=lambda: now[0], sleep=sleep)
    provider, _ = limits.for_call("p", "m")
    for _ in range(4):
        async with provider.slot():
            pass
    assert slept == [2.0, 2.0]


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_is_full_jitter_between_zero_and_the_doubling_cap() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    rng = random.Random(20261129)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        delays = [policy.delay(attempt, throttled(), rng) for _ in range(2000)]
        assert all(0.0 <= d <= cap for d in delays)
        # Uniform on [0, cap]: mean cap/2, a tenth of the draws in each tenth of the range.
        assert statistics.fmean(delays) == pytest.approx(cap / 2, rel=0.06)
        assert sum(d < cap / 10 for d in delays) / len(delays) == pytest.approx(0.1, abs=0.03)
        assert sum(d > 0.9 * cap for d in delays) / len(delays) == pytest.approx(0.1, abs=0.03)


def test_a_retry_after_replaces_the_backoff() -> None:
    assert RetryPolicy().delay(3, throttled(retry_after=4.5), random.Random(0)) == 4.5


# -- a 429 storm, end to end through the limiter and the retry loop -----------------------------


class SlidingWindow:
    """A provider's limit: `limit` requests in any `window_s` seconds; past it, 429 with the
    Retry-After until the oldest request leaves the window."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._sent: deque[float] = deque()
        self.accepted = 0
        self.refused = 0

    def request(self, now: float) -> float | None:
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()
        if len(self._sent) >= self.limit:
            self.refused += 1
            return self._sent[0] + self.window_s - now
        self._sent.append(now)
        self.accepted += 1
        return None


async def storm(
    calls: int, server: SlidingWindow, limit: RateLimit, latency_s: float = 1.0
) -> tuple[int, float]:
    """`calls` calls submitted at once, each as the caller makes it: a slot from the provider
    and the model limiters, one second upstream, the outcome taught to both, retried by the
    default policy. Returns (failed calls, virtual seconds taken)."""
    loop = asyncio.get_running_loop()
    limits = Limits({"fake": limit}, clock=loop.time)
    rng = random.Random(5)

    async def attempt() -> None:
        limiters = limits.for_call("fake", "m")
        async with limiters[0].slot(), limiters[1].slot():
            sent_at = limiters[0].now()
            retry_after = server.request(loop.time())
            await asyncio.sleep(latency_s)
            if retry_after is not None:
                error = UpstreamStatusError(
                    "HTTP 429",
                    provider="fake",
                    model="m",
                    status_code=429,
                    retry_after=retry_after,
                )
                for one in limiters:
                    one.on_error(error, sent_at)
                raise error
        for one in limiters:
            one.on_success(sent_at)

    async def call() -> bool:
        try:
            await with_retries(attempt, RetryPolicy(max_elapsed_s=3600), rng=rng)
        except ProviderError:
            return False
        return True

    results = await asyncio.gather(*(call() for _ in range(calls)))
    return results.count(False), loop.time()


@pytest.mark.parametrize(
    ("limit", "max_refused_share"),
    [
        (RateLimit(max_concurrency=16), 0.01),  # learnt from the 429s
        (RateLimit(rpm=60, max_concurrency=16), 0.002),  # the burst allowance: one 429
    ],
)
def test_a_429_storm_settles_under_the_limit(limit: RateLimit, max_refused_share: float) -> None:
    """500 calls at once against a 60-requests-a-minute key (benchmark row 5, unscaled)."""
    server = SlidingWindow(60, 60.0)
    failed, seconds = run_virtual(storm(500, server, limit))
    assert failed == 0 and server.accepted == 500
    assert server.refused / (server.accepted + server.refused) <= max_refused_share
    throughput = 500 / (seconds / 60.0) / 60  # 1.0 is the key's limit
    assert throughput >= 0.85
