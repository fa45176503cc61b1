from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moa import MoA, ProviderConfig, Registry, RetryPolicy
from moa.agents import Aggregator, ProposalLayer
from moa.testing import FakeUpstream


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The shared fake upstream, with scripts and recorded requests reset for each test."""
    upstream_server.reset()
    yield upstream_server


@pytest.fixture
def registry(upstream: FakeUpstream) -> Registry:
    return Registry({"fake": ProviderConfig("fake", upstream.base_url)}, env={})


@pytest.fixture
def make_moa(registry: Registry):
    """Build a MoA on the fake upstream: make_moa([["a", "b"], ["c"]], "agg")."""

    def make(
        layers: list[list[str]],
        aggregator: str = "agg",
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        **layer_kwargs: object,
    ) -> MoA:
        return MoA(
            *(ProposalLayer(*(f"fake:{m}" for m in models), **layer_kwargs) for models in layers),
            Aggregator(f"fake:{aggregator}"),
            registry=registry,
            retry=retry or RetryPolicy(max_attempts=1),
            timeout_s=timeout_s,
        )

    return make


@pytest.fixture
def recipe_file(tmp_path: Path, upstream: FakeUpstream):
    """Write a recipe TOML whose `fake` provider is the fake upstream."""

    def write(body: str, name: str = "recipe.toml") -> Path:
        path = tmp_path / name
        path.write_text(
            body + f'\n[providers.fake]\nbase_url = "{upstream.base_url}"\n', encoding="utf-8"
        )
        return path

    return write
