"""Ports picked for local servers: free on every interface, outside Ray's worker ports,
and outside the system's ephemeral range, where another process's connection could take
one before the server binds it."""

import socket

from facilflow_assets.loopback import LOWEST_PORT, first_ephemeral_port, free_port


def test_a_picked_port_is_free_everywhere_and_below_the_ephemeral_range():
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1  # picked at random, not one fixed port
    for port in ports:
        assert LOWEST_PORT <= port < first_ephemeral_port()
        assert not 10_002 <= port <= 19_999  # Ray's worker ports
        with socket.socket() as server:
            server.bind(("0.0.0.0", port))  # noqa: S104 - the probe of every interface
