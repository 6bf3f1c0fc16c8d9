"""The loopback rule: only addresses on this machine may be used without CURVE encryption."""

from __future__ import annotations

import ipaddress


def host_of(address: str) -> str:
    """'tcp://127.0.0.1:5555' -> '127.0.0.1'; 'tcp://[::1]:5555' -> '::1'; 'ipc:///tmp/x' -> '/tmp/x'."""
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def is_loopback(address: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port); False for anything else."""
    host = host_of(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
