"""How many threads the embedded model computes with: every core unless MOA_LOCAL_THREADS says."""

from __future__ import annotations

import os

import pytest

from moa.errors import ConfigError
from moa.providers.local.provider import default_threads


def test_every_core_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOA_LOCAL_THREADS", raising=False)
    assert default_threads() == max(1, os.cpu_count() or 1)


def test_moa_local_threads_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_LOCAL_THREADS", "1")
    assert default_threads() == 1


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_value_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MOA_LOCAL_THREADS", value)
    with pytest.raises(ConfigError, match="whole number of threads"):
        default_threads()
