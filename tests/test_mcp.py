"""`moa mcp` as MCP clients use it: a real `moa mcp` process driven by the official SDK's own
client, over stdio and over streamable HTTP, on recipes whose models are the fake upstream."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

import moa
from moa.cli.exposure import check_exposure, is_loopback
from moa.errors import ConfigError
from moa.testing import FakeUpstream, Reply

RECIPE = """
name = "mcp-moa"
description = "Two proposers, then an aggregator. For tests."
[retry]
max_attempts = 1
[[layers]]
models = ["fake:a", "fake:b"]
[aggregator]
model = "fake:agg"
"""

PRICED = """
name = "priced"
max_cost_usd = 1.0
[[layers]]
models = [{ model = "fake:a", price = { input = 1000000, output = 1000000 } }]
[aggregator]
model = "fake:agg"
price = { input = 1000000, output = 1000000 }
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without provider or moa keys, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("MOA_API_KEYS", None)
    env.update(extra)
    return env


def moa_mcp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`moa mcp ARGS` to completion (for the runs refused before anything listens)."""
    return subprocess.run(
        [sys.executable, "-m", "moa.cli.app", "mcp", *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@asynccontextmanager
async def stdio_session(*args: str) -> AsyncIterator[ClientSession]:
    """An initialized client session with `moa mcp ARGS`, started as a client starts it."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "moa.cli.app", "mcp", *args], env=clean_env()
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        initialized = await session.initialize()
        # moa's own name and version, not the MCP library's.
        assert (initialized.serverInfo.name, initialized.serverInfo.version) == (
            "moa",
            moa.__version__,
        )
        yield session


class Progress:
    """Records the progress notifications of one tool call."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))

    @property
    def messages(self) -> list[str]:
        return [m or "" for _, _, m in self.seen]


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


# -- over stdio ---------------------------------------------------------------------------------


async def test_over_stdio_a_client_lists_the_tools_and_the_recipes_and_asks_with_progress(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("a", Reply("Paris, says a."))
    upstream.script("b", Reply("Paris, says b."))
    upstream.script("agg", Reply("Paris."))
    async with stdio_session("-r", str(recipe_file(RECIPE))) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"ask", "list_recipes"}
        assert "mcp-moa" in (tools["ask"].description or "")
        assert tools["ask"].inputSchema["required"] == ["prompt"]

        listed = await session.call_tool("list_recipes", {})
        assert listed.structuredContent == {
            "default": "mcp-moa",
            "recipes": [
                {
                    "name": "mcp-moa",
                    "description": "Two proposers, then an aggregator. For tests.",
                    "layers": [["fake:a", "fake:b"]],
                    "aggregator": "fake:agg",
                    "strategy": "synthesize",
                    "max_cost_usd": None,
                }
            ],
        }

        progress = Progress()
        result = await session.call_tool(
            "ask", {"prompt": "Capital of France?"}, progress_callback=progress
        )
    assert not result.isError, text_of(result)
    assert text_of(result) == "Paris."
    assert result.structuredContent is not None
    assert result.structuredContent["answer"] == "Paris."
    assert result.structuredContent["aggregator"] == "fake:agg"
    assert result.structuredContent["proposals"] is None  # only on request
    assert result.structuredContent["cost"] is None
    # The aggregator read both proposals.
    sent = str(upstream.requests_for("agg")[0]["messages"])
    assert "Paris, says a." in sent and "Paris, says b." in sent
    # One notification per proposal, one as the aggregator starts, one when done; rising.
    assert len(progress.seen) == 4
    assert [p for p, _, _ in progress.seen] == [1, 2, 3, 4]
    assert progress.seen[0][1] == 4 and progress.seen[-1][:2] == (4, 4)
    said, counts = zip(*(m.rsplit(" (", 1) for m in progress.messages[:2]), strict=True)
    assert set(said) == {"layer 1/1: fake:a answered", "layer 1/1: fake:b answered"}
    assert list(counts) == ["1 of 2)", "2 of 2)"]
    assert progress.messages[2:] == ["aggregating with fake:agg", "answered"]


async def test_on_request_the_answer_comes_with_the_proposals_the_cost_and_the_failed_members(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("a", Reply("a thinks 4.", usage=(10, 3)))
    upstream.script("b", Reply(status=500))
    upstream.script("agg", Reply("4.", usage=(20, 1)))
    async with stdio_session("-r", str(recipe_file(RECIPE))) as session:
        result = await session.call_tool(
            "ask",
            {
                "prompt": "2+2?",
                "recipe": "mcp-moa",
                "include_proposals": True,
                "include_cost": True,
            },
        )
    assert not result.isError, text_of(result)
    reply = result.structuredContent
    assert reply is not None
    assert reply["answer"] == "4."
    by_model = {p["model"]: p for p in reply["proposals"]}
    assert by_model["fake:a"]["status"] == "ok" and by_model["fake:a"]["text"] == "a thinks 4."
    assert by_model["fake:b"]["status"] == "failed" and by_model["fake:b"]["error"]
    assert reply["failed"] == ["layer 1 · fake:b: " + reply["failed"][0].split(": ", 1)[1]]
    assert reply["cost"]["input_tokens"] == 30 and reply["cost"]["output_tokens"] == 4
    assert reply["cost"]["usd"] is None  # the fake models have no price
    assert reply["cost"]["unpriced"] == ["fake:a", "fake:agg"]
    text = text_of(result)
    assert text.startswith("4.\n\n(not every member answered — layer 1 · fake:b")
    assert "### layer 1 · fake:a\na thinks 4." in text
    assert "## Cost\nunknown (30 input + 4 output tokens, 3 calls)" in text


async def test_an_unknown_recipe_an_empty_prompt_and_a_budget_are_answered_as_tool_errors(
    upstream: FakeUpstream, recipe_file
) -> None:
    served = ["-r", str(recipe_file(RECIPE)), "-r", str(recipe_file(PRICED, name="p.toml"))]
    async with stdio_session(*served) as session:
        unknown = await session.call_tool("ask", {"prompt": "hi", "recipe": "nope"})
        empty = await session.call_tool("ask", {"prompt": "  "})
        # Any call at these prices costs more than a millionth of a dollar.
        refused = await session.call_tool(
            "ask", {"prompt": "hi", "recipe": "priced", "max_cost_usd": 0.000001}
        )
    assert unknown.isError and "offers mcp-moa, priced" in text_of(unknown)
    assert empty.isError and "the prompt is empty" in text_of(empty)
    assert refused.isError and "would be exceeded" in text_of(refused)
    assert upstream.requests == []  # nothing was spent on any of them


# -- over streamable HTTP -----------------------------------------------------------------------


@contextmanager
def http_server(*args: str, env: dict[str, str]) -> Iterator[str]:
    """`moa mcp --port 0 ARGS` running; yields the URL it printed once listening."""
    process = subprocess.Popen(
        [sys.executable, "-m", "moa.cli.app", "mcp", "--port", "0", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        line = _line_with(process, "moa mcp: offering", timeout_s=60)
        yield line.split(" at ", 1)[1].split(" ")[0]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def _line_with(process: subprocess.Popen[str], marker: str, timeout_s: float) -> str:
    """The first stderr line holding `marker`; fails (not hangs) if none comes in time."""
    assert process.stderr is not None
    seen: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            if marker in line:
                return line.strip()
    raise AssertionError(f"moa mcp never said {marker!r}; stderr: {''.join(seen)}")


@asynccontextmanager
async def http_session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx.AsyncClient(headers=headers, timeout=60) as client,
        streamable_http_client(url, http_client=client) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def test_over_http_keys_from_the_flag_and_the_environment_are_accepted_and_others_refused(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("agg", Reply("Answered over HTTP."))
    args = ["-r", str(recipe_file(RECIPE)), "--api-key", "flag-key"]
    with http_server(*args, env=clean_env(MOA_API_KEYS="env-key")) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        for key in ("flag-key", "env-key"):
            progress = Progress()
            async with http_session(url, key) as session:
                result = await session.call_tool(
                    "ask", {"prompt": "hello"}, progress_callback=progress
                )
            assert text_of(result) == "Answered over HTTP."
            assert progress.messages[-2:] == ["aggregating with fake:agg", "answered"]
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        async with httpx.AsyncClient() as plain:
            refusals = [
                await plain.post(url, json=initialize, headers=headers)
                for headers in ({}, {"Authorization": "Bearer wrong-key"})
            ]
        for refused in refusals:
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"] == "Bearer"
        with pytest.raises(Exception) as raised:  # the SDK's client, without a key
            async with http_session(url, None):
                pass
        assert "401" in repr(raised.value) or "Unauthorized" in repr(raised.value)


async def test_over_http_on_loopback_no_key_is_needed(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("agg", Reply("open on loopback"))
    with http_server("-r", str(recipe_file(RECIPE)), env=clean_env()) as url:
        async with http_session(url, None) as session:
            result = await session.call_tool("ask", {"prompt": "hello"})
    assert text_of(result) == "open on loopback"


# -- no open server by accident -----------------------------------------------------------------


def test_a_non_loopback_host_without_a_key_is_refused_in_one_line_naming_the_fix(
    recipe_file,
) -> None:
    done = moa_mcp("-r", str(recipe_file(RECIPE)), "--port", "0", "--host", "0.0.0.0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fix in ("--api-key", "MOA_API_KEYS", "--no-auth"):
        assert fix in lines[0]
    assert "0.0.0.0" in lines[0]


def test_the_docs_quote_the_refusal_as_it_is_printed(recipe_file) -> None:
    done = moa_mcp("-r", str(recipe_file(RECIPE)), "--port", "8765", "--host", "0.0.0.0")
    docs = (Path(__file__).parents[1] / "docs" / "serving" / "mcp.md").read_text("utf-8")
    assert done.stderr.strip() in docs


def test_no_auth_warns_at_start(recipe_file) -> None:
    # A recipe whose key is missing stops the start right after the warning: nothing listens.
    done = moa_mcp("-r", "together-moa", "--port", "0", "--host", "0.0.0.0", "--no-auth")
    assert done.returncode == 2
    warning, error = done.stderr.strip().splitlines()
    assert warning.startswith("warning: moa mcp listens on 0.0.0.0 with no API key (--no-auth)")
    assert "TOGETHER_API_KEY" in error


def test_host_without_port_is_a_usage_error() -> None:
    done = moa_mcp("--host", "127.0.0.1")
    assert done.returncode == 2
    assert "--port" in done.stderr


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"]
)
def test_loopback_hosts_need_no_key(host: str) -> None:
    assert is_loopback(host)
    assert check_exposure("moa mcp", host, [], no_auth=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com"])
def test_other_hosts_need_a_key_or_no_auth(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="--api-key"):
        check_exposure("moa mcp", host, [], no_auth=False)
    assert check_exposure("moa mcp", host, ["k"], no_auth=False) is None
    warning = check_exposure("moa mcp", host, [], no_auth=True)
    assert warning is not None and f"listens on {host} with no API key (--no-auth)" in warning


def test_no_auth_and_a_key_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="contradict"):
        check_exposure("moa mcp", "0.0.0.0", ["k"], no_auth=True)


def test_without_the_mcp_extra_moa_mcp_says_how_to_install_it() -> None:
    code = "import sys; sys.modules['mcp'] = None; from moa.cli.app import main; main(['mcp'])"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert done.returncode == 2
    assert "pip install 'moa[mcp]'" in done.stderr
