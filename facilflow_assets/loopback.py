"""Ports on this machine, for the local servers FacilFlow starts (broker, Ray head)."""

import contextlib
import socket


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepts_connections(address: str) -> bool:
    """Whether something listens at `host:port`."""
    host, port = address.rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 2):
        return True
    return False
