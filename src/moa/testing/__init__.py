"""Test doubles shipped with moa, for its own tests and benchmarks and for yours."""

from moa.testing.fake_upstream import Call, FakeUpstream, Reply
from moa.testing.latency import Fixed, LogNormal, Profile

__all__ = ["Call", "FakeUpstream", "Fixed", "LogNormal", "Profile", "Reply"]
