"""Ports on this machine for the local servers FacilFlow starts (broker, Ray head), and
stopping such a server with its children."""

import contextlib
import os
import random
import signal
import socket
import subprocess
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Above Ray's worker ports (10002 to 19999 by default): Ray refuses a head whose ports
# overlap them, and its workers bind them as they start.
LOWEST_PORT = 20_000


def free_port() -> int:
    """A TCP port nothing listens on now, between Ray's worker ports and the range the
    system hands out for outgoing connections and port 0. A server is often started a
    moment after its port is picked (Ray's HAProxy, seconds later); in the ephemeral range
    another process's connection could take the port meanwhile."""
    first_ephemeral = first_ephemeral_port()
    for _ in range(100):
        port = random.randrange(LOWEST_PORT, first_ephemeral)
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("", port))  # every interface: a server may bind them all
            return port
    with socket.socket() as probe:  # no luck below: one the system picks
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_ephemeral_port() -> int:
    try:
        return max(LOWEST_PORT + 1, int(EPHEMERAL_RANGE.read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def accepts_connections(address: str) -> bool:
    """Whether something listens at `host:port`."""
    host, port = address.rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 2):
        return True
    return False


def stop_process_group(process: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM to the process's group (started with `start_new_session`), then, `grace_s`
    later, SIGKILL to what is left of it: a Ray node's or driver's children do not always
    end with their leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
