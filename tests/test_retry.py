"""The retry loop decides on status codes and Retry-After headers only."""

from __future__ import annotations

import email.utils
import random

import pytest

from moa import ProviderError, RetryPolicy
from moa.errors import (
    EmptyResponseError,
    MalformedResponseError,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from moa.policies.retry import parse_retry_after, with_retries


def error(
    status: int | None = None,
    *,
    kind: type[ProviderError] = UpstreamStatusError,
    retry_after: float | None = None,
) -> ProviderError:
    return kind("x", provider="p", model="m", status_code=status, retry_after=retry_after)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(status: int) -> None:
    assert error(status).retryable


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not(status: int) -> None:
    assert not error(status).retryable


def test_connection_errors_and_timeouts_are_retryable_bad_bodies_not() -> None:
    assert error(kind=UpstreamConnectionError).retryable
    assert error(kind=UpstreamTimeoutError).retryable
    assert not error(kind=MalformedResponseError).retryable
    assert not error(kind=EmptyResponseError).retryable


def test_retry_after_headers() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after-ms": "1500"}, now) == 1.5
    assert parse_retry_after({"retry-after": "3"}, now) == 3.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now) == pytest.approx(7, abs=1)
    assert parse_retry_after({"x-ratelimit-reset": "2.5s"}, now) == 2.5
    assert parse_retry_after({"x-ratelimit-reset": str(now + 4)}, now) == pytest.approx(4)
    assert parse_retry_after({}, now) is None
    assert parse_retry_after({"retry-after": "soon"}, now) is None


async def test_retries_until_success_sleeping_as_told() -> None:
    outcomes = [error(429, retry_after=2.0), error(503), "ok"]
    slept: list[float] = []

    async def call() -> str:
        item = outcomes.pop(0)
        if isinstance(item, ProviderError):
            raise item
        return item

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    value, attempts = await with_retries(
        call, RetryPolicy(base_delay_s=1.0), sleep=sleep, rng=random.Random(0)
    )
    assert (value, attempts) == ("ok", 3)
    assert slept[0] == 2.0 and 0 <= slept[1] <= 2.0  # server's wait, then jittered backoff


async def test_gives_up_after_max_attempts_and_records_them() -> None:
    async def call() -> str:
        raise error(500)

    async def sleep(seconds: float) -> None:
        pass

    with pytest.raises(ProviderError) as info:
        await with_retries(call, RetryPolicy(max_attempts=3), sleep=sleep)
    assert info.value.attempts == 3


async def test_never_retries_a_400() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise error(400)

    with pytest.raises(ProviderError):
        await with_retries(call, RetryPolicy(max_attempts=5))
    assert calls == 1


async def test_gives_up_when_the_wait_would_exceed_the_time_budget() -> None:
    async def call() -> str:
        raise error(429, retry_after=60)

    with pytest.raises(ProviderError) as info:
        await with_retries(call, RetryPolicy(max_attempts=5, max_elapsed_s=10))
    assert info.value.attempts == 1
