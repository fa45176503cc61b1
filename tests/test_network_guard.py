"""The suite's guard: no test reaches anything but this machine (see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from conftest import NetworkGuard, RealNetworkCall
from moa.testing import FakeUpstream


def test_a_connection_to_a_public_address_fails_at_once(network_guard: NetworkGuard) -> None:
    with socket.socket() as sock, pytest.raises(RealNetworkCall, match=r"203\.0\.113\.1:443"):
        sock.connect(("203.0.113.1", 443))
    with pytest.raises(RealNetworkCall, match="never a real provider"):
        socket.create_connection(("203.0.113.1", 443), timeout=30)
    assert len(network_guard.refused) == 2
    network_guard.refused.clear()  # refused as it should be: not this test's failure


async def test_asyncio_connections_and_dns_lookups_are_refused_too(
    network_guard: NetworkGuard,
) -> None:
    with pytest.raises(RealNetworkCall, match="2001:db8::1"):
        await asyncio.open_connection("2001:db8::1", 443)
    with pytest.raises(RealNetworkCall, match="a DNS lookup"):
        await asyncio.open_connection("api.openai.com", 443)
    network_guard.refused.clear()


async def test_a_refusal_the_code_swallows_still_fails_the_test(
    network_guard: NetworkGuard,
) -> None:
    """What the teardown sees: a caught refusal stays on record."""
    # as an adapter that turns every exception into a retryable error would:
    with contextlib.suppress(RealNetworkCall):
        socket.create_connection(("198.51.100.7", 80), timeout=30)
    assert network_guard.refused and "198.51.100.7:80" in network_guard.refused[0]
    network_guard.refused.clear()


async def test_loopback_and_unix_sockets_are_allowed(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    host, port = upstream.base_url.split("//")[1].split("/")[0].split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    await writer.wait_closed()
    _, writer = await asyncio.open_connection("localhost", int(port))
    writer.close()
    await writer.wait_closed()
    server = await asyncio.start_unix_server(lambda r, w: w.close(), path=tmp_path / "s.sock")
    async with server:
        _, writer = await asyncio.open_unix_connection(tmp_path / "s.sock")
        writer.close()
        await writer.wait_closed()
