"""Test doubles shipped with moa, for its own tests and benchmarks and for yours."""

from moa.testing.fake_upstream import FakeUpstream, Reply

__all__ = ["FakeUpstream", "Reply"]
