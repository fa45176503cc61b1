"""Many workers, one API key: rate limits and the response cache shared through Redis.

`--redis URL` (or `MOA_REDIS_URL`) makes every limiter of a process a `RedisLimiter`: the
processes on one Redis pace, cap and learn together, per provider and per model. The
embedded `local` provider keeps per-process limits (each process has its own model).
Without Redis nothing changes. Key scheme and faults: see README "Many workers, one key".

May import the policies it shares and the vocabulary; the faces (CLI, server) install it.
"""

from __future__ import annotations

from moa.policies.ratelimit import Limiter, LimiterFactory, Limits, RateLimit
from moa.policies.redis.leases import Leases
from moa.policies.redis.limiter import RedisLimiter
from moa.policies.redis.link import Link, check

# Providers whose limits belong to this process alone.
PER_PROCESS = frozenset({"local"})


def limiter_factory(link: Link, leases: Leases | None = None) -> LimiterFactory:
    def make(key: str, limit: RateLimit, adaptive: bool) -> Limiter:
        if key.partition(":")[0] in PER_PROCESS:
            return Limiter(limit, adaptive=adaptive)
        return RedisLimiter(key, limit, link, adaptive=adaptive, leases=leases or Leases())

    return make


def share_limits(
    limits: Limits, url: str, *, optional: bool = False, leases: Leases | None = None
) -> Link:
    """Put `limits` on Redis at `url`. Unreachable now: a ConfigError, or with `optional` a
    warning, per-process limits meanwhile, and Redis used as soon as it answers."""
    reachable = check(url, optional=optional)
    link = Link(url)
    if not reachable:
        link.start_down()
    limits.factory = limiter_factory(link, leases)
    return link
