"""No open server by accident: a server that spends its owner's provider keys listens beyond
this machine only behind a key, or when told plainly that the network is trusted.

One rule for every verb that listens (`moa mcp --port` here; `moa serve`, `moa web` and the
metrics endpoint may share it): loopback needs nothing; any other address needs `--api-key` /
MOA_API_KEYS, or `--no-auth`, which then warns on every start."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from moa.errors import ConfigError


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (and an IPv4-mapped loopback), or `localhost`. Any other name counts
    as reachable: what it resolves to is not known here, and may change."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_exposure(host: str, *, keys: Sequence[str], no_auth: bool) -> str | None:
    """Refuse (ConfigError) listening on a non-loopback `host` with no key and no `--no-auth`;
    return the warning to print when `--no-auth` opens one, else None."""
    if no_auth and keys:
        raise ConfigError("--no-auth and --api-key / MOA_API_KEYS contradict each other: drop one")
    if keys or is_loopback(host):
        return None
    if no_auth:
        return (
            f"warning: listening on {host} with no key (--no-auth): anyone who can reach it "
            f"can spend this machine's provider keys"
        )
    raise ConfigError(
        f"refusing to listen on {host} without a key: anyone who can reach it could spend "
        f"this machine's provider keys — pass --api-key KEY (or set MOA_API_KEYS), or "
        f"--no-auth on a trusted network"
    )
