"""Test doubles shipped with moa, for its own tests and benchmarks and for yours."""

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
