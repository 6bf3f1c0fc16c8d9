"""The loopback rule: only addresses on this machine may be used without CURVE encryption."""

from __future__ import annotations

import ipaddress


def host_of(address: str) -> str:
    """'tcp://127.0.0.1:5555' -> '127.0.0.1'; 'tcp://[::1]:5555' -> '::1'; 'ipc:///tmp/x' -> '/tmp/x'."""
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def is_ipv6(address: str) -> bool:
    """True for an IPv6 literal ('tcp://[::1]:5555'): the socket needs ZeroMQ's IPV6 option."""
    return ":" in host_of(address)


def is_loopback(address: str) -> bool:
    """True for localhost, 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (with or without a port); False otherwise."""
    host = host_of(address)
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback
