"""Test doubles shipped with moa, for its own tests and benchmarks and for yours: the fake
OpenAI-compatible upstream (`fake_upstream`, with its scripted replies and latency profiles),
a Redis server for tests, and virtual time.

Stands alone: imports nothing else of moa, so it behaves as an upstream, not as a part of it.
"""

from moa.testing.fake_upstream import FakeUpstream
from moa.testing.latency import Fixed, LogNormal, Profile
from moa.testing.replies import MISMATCH, Call, Reply, continuing

__all__ = [
    "MISMATCH",
    "Call",
    "FakeUpstream",
    "Fixed",
    "LogNormal",
    "Profile",
    "Reply",
    "continuing",
]
