"""Serving several recipes: one set of providers and rate limits per process; CORS on request."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.conftest import ServerThread

from moa import ConfigError, recipes
from moa.testing import FakeUpstream, Reply

pytest.importorskip("fastapi")
from moa.server import create_app


def recipe(name: str, base_url: str, max_concurrency: int = 1) -> recipes.Recipe:
    return recipes.parse(
        f'name = "{name}"\n[aggregator]\nmodel = "fake:{name}"\n'
        f'[providers.fake]\nbase_url = "{base_url}"\nmax_concurrency = {max_concurrency}\n'
    )


async def test_recipes_on_one_provider_share_its_rate_limits(upstream: FakeUpstream) -> None:
    upstream.script("one", Reply("1", delay_s=0.3))
    upstream.script("two", Reply("2", delay_s=0.3))
    app = create_app(
        {"one": recipe("one", upstream.base_url), "two": recipe("two", upstream.base_url)}
    )
    server = ServerThread(app)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            replies = await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions",
                        json={"model": m, "messages": [{"role": "user", "content": "q"}]},
                    )
                    for m in ("one", "two", "one", "two")
                )
            )
    finally:
        server.stop()
    assert [r.status_code for r in replies] == [200] * 4
    assert upstream.max_active == 1  # max_concurrency = 1 held across both recipes


def test_recipes_that_declare_one_provider_differently_are_refused(upstream: FakeUpstream) -> None:
    with pytest.raises(ConfigError, match="declare provider 'fake' differently"):
        create_app(
            {"one": recipe("one", upstream.base_url, 1), "two": recipe("two", upstream.base_url, 2)}
        )


def test_cors_is_off_by_default_and_answers_preflights_when_asked(upstream: FakeUpstream) -> None:
    preflight = {
        "Origin": "https://chat.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    for origins, allowed in (((), None), (["https://chat.example"], "https://chat.example")):
        server = ServerThread(
            create_app({"one": recipe("one", upstream.base_url)}, cors_origins=origins)
        )
        try:
            response = httpx.options(f"{server.url}/v1/chat/completions", headers=preflight)
        finally:
            server.stop()
        assert response.headers.get("access-control-allow-origin") == allowed
