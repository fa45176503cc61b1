"""Test doubles shipped with moa, for its own tests and benchmarks and for yours."""

from moa.testing.fake_upstream import MISMATCH, Call, FakeUpstream, Reply, continuing
from moa.testing.latency import Fixed, LogNormal, Profile

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
