"""Security and load: bearer keys, the body limit, the concurrent-run cap, client disconnects
cancelling upstream calls, and graceful shutdown letting in-flight runs finish."""

from __future__ import annotations

import asyncio
import threading

import httpx
import openai
import pytest

from conftest import wait_until
from moa.testing import FakeUpstream, Reply

MODEL = "test-moa"
USER = [{"role": "user", "content": "q"}]
BODY = {"model": MODEL, "messages": USER}


async def async_wait_until(condition, timeout_s: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def health(server) -> dict:
    return httpx.get(f"{server.url}/healthz").json()


async def runs_in_progress(http: httpx.AsyncClient, server) -> int:
    return int((await http.get(f"{server.url}/healthz")).json()["runs_in_progress"])


async def async_wait_for_idle(http: httpx.AsyncClient, server, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while await runs_in_progress(http, server):
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the run's slot to free")
        await asyncio.sleep(0.01)


# -- auth --------------------------------------------------------------------------------------


def test_with_keys_every_api_route_needs_a_valid_bearer_key(serve_moa) -> None:
    server = serve_moa(api_keys=["key-one", "key-two"])
    url = f"{server.url}/v1/chat/completions"
    missing = httpx.post(url, json=BODY)
    wrong = httpx.post(url, json=BODY, headers={"Authorization": "Bearer nope"})
    for response, code in ((missing, "missing_api_key"), (wrong, "invalid_api_key")):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == code
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # load-balancer probes

    for key in ("key-one", "key-two"):
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
        assert sdk.chat.completions.create(model=MODEL, messages=USER).choices
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="stolen", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=USER)
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer key-one"}).text
    assert 'moa_errors_total{code="invalid_api_key"}' in text


def test_without_keys_the_server_is_open(moa_server) -> None:
    response = httpx.post(f"{moa_server.url}/v1/chat/completions", json=BODY)
    assert response.status_code == 200


# -- body limit --------------------------------------------------------------------------------


def test_bodies_over_the_limit_are_413_declared_or_chunked(
    upstream: FakeUpstream, serve_moa
) -> None:
    server = serve_moa(max_body_bytes=2000)
    url = f"{server.url}/v1/chat/completions"
    big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 5000}]}
    declared = httpx.post(url, json=big)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit must hold while reading
        yield b'{"model": "test-moa", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}]}'

    chunked = httpx.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert upstream.requests == []
    assert httpx.post(url, json=BODY).status_code == 200  # small bodies still pass


# -- saturation --------------------------------------------------------------------------------


async def test_saturated_server_answers_429_with_retry_after_then_recovers(
    upstream: FakeUpstream, serve_moa
) -> None:
    server = serve_moa(max_concurrent_runs=1)
    upstream.script("a", Reply("slow", delay_s=60), Reply("fast"))
    url = f"{server.url}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=30) as http:
        running = asyncio.create_task(http.post(url, json=BODY))
        await async_wait_until(lambda: upstream.requests_for("a"), what="the first run")
        refused = await http.post(url, json=BODY)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        sdk = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(model=MODEL, messages=USER)
        running.cancel()  # the client gives up: its run ends and frees the slot
        await asyncio.gather(running, return_exceptions=True)
        await async_wait_for_idle(http, server)
        assert (await http.post(url, json=BODY)).status_code == 200


# -- disconnects -------------------------------------------------------------------------------


async def test_client_disconnect_cancels_the_upstream_calls_of_a_completion(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("a", Reply("slow a", delay_s=60))
    upstream.script("b", Reply("slow b", delay_s=60))
    url = f"{moa_server.url}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=30) as http:
        request = asyncio.create_task(http.post(url, json=BODY))
        await async_wait_until(
            lambda: upstream.requests_for("a") and upstream.requests_for("b"),
            what="both proposers to be called",
        )
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
        # The fake counts a disconnect only when its client (the moa server) hangs up early.
        await async_wait_until(lambda: upstream.disconnects == 2, what="upstream to see it")
        await async_wait_for_idle(http, moa_server)
    assert upstream.requests_for("agg") == []


async def test_client_disconnect_before_the_first_token_cancels_a_streamed_run(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("a", Reply("slow a", delay_s=60))
    upstream.script("b", Reply("slow b", delay_s=60))
    body = {**BODY, "stream": True}
    url = f"{moa_server.url}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=30) as http:

        async def read_stream() -> None:
            async with http.stream("POST", url, json=body) as response:
                await response.aread()

        request = asyncio.create_task(read_stream())
        await async_wait_until(
            lambda: upstream.requests_for("a") and upstream.requests_for("b"),
            what="both proposers to be called",
        )
        request.cancel()  # no headers have been sent yet: the run is still proposing
        await asyncio.gather(request, return_exceptions=True)
        await async_wait_until(lambda: upstream.disconnects == 2, what="upstream to see it")
        await async_wait_for_idle(http, moa_server)
    assert upstream.requests_for("agg") == []


def test_client_disconnect_mid_stream_cancels_the_aggregator_call(
    upstream: FakeUpstream, moa_server
) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    upstream.script("agg", Reply(words, token_delay_s=0.2))
    body = {**BODY, "stream": True}
    with httpx.stream("POST", f"{moa_server.url}/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if '"content": "w0 "' in line)
    # Closing the response mid-stream closed the connection.
    wait_until(lambda: upstream.disconnects == 1, what="the aggregator call to be cancelled")
    wait_until(lambda: health(moa_server)["runs_in_progress"] == 0, what="the slot to free")
    metrics = httpx.get(f"{moa_server.url}/metrics").text
    assert 'moa_requests_total{model="test-moa",status="499",stream="true"} 1.0' in metrics


# -- graceful shutdown -------------------------------------------------------------------------


def test_shutdown_lets_in_flight_runs_finish(upstream: FakeUpstream, serve_moa) -> None:
    server = serve_moa()
    upstream.script("a", Reply("late but complete", delay_s=1.0))
    outcome: dict[str, httpx.Response] = {}

    def call() -> None:
        outcome["response"] = httpx.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=30)

    client = threading.Thread(target=call)
    client.start()
    wait_until(lambda: upstream.requests_for("a"), what="the run to start")
    server.server.should_exit = True  # what SIGTERM does
    client.join(timeout=30)
    response = outcome["response"]
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "answer from agg"
    wait_until(lambda: server.stopped, what="the server to stop")
    assert upstream.disconnects == 0
