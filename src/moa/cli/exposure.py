"""Who can reach a server moa starts: listening beyond loopback needs an API key, or an explicit
`--no-auth` (a trusted network), which is then said on every start.

One rule for every command that listens — `moa serve` (and its /metrics), `moa web`, `moa mcp`
over HTTP: call `check_exposure` with the host, the keys and the opt-out before binding.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Annotated

import typer

from moa.errors import ConfigError, OpenServerError

NoAuthOpt = Annotated[
    bool,
    typer.Option(
        "--no-auth",
        help="Listen beyond loopback with no API key, for a trusted network (warned on start).",
    ),
]


def is_loopback(host: str) -> bool:
    """Only this machine can connect: localhost, 127.0.0.0/8, ::1 (IPv4-mapped too). Any
    other name or address — 0.0.0.0, ::, a LAN address, a hostname — counts as reachable."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False  # a hostname may resolve to anything: treated as exposed
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_exposure(
    command: str, host: str, keys: Sequence[str], *, no_auth: bool = False
) -> str | None:
    """Refuse (OpenServerError) a non-loopback `host` with no `keys` unless `no_auth`; return
    the warning to print on start when `no_auth` leaves it open, else None."""
    if no_auth and any(keys):
        raise ConfigError(
            f"{command}: --no-auth and --api-key / MOA_API_KEYS contradict each other: drop one"
        )
    if is_loopback(host) or any(keys):
        return None
    if not no_auth:
        raise OpenServerError(command, host)
    return (
        f"{command} listens on {host} with no API key (--no-auth): anyone who can reach the "
        f"port can spend your provider keys and use the playground, events API and metrics"
    )
