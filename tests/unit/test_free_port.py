"""Tests pick their ports with system.boot.free_port: outside the kernel's ephemeral range, so
an outgoing connection cannot take a port between the pick and the listener's bind (CI once
failed that way: the control port "address already in use")."""
import socket

from system import boot


def test_free_ports_come_from_below_the_ephemeral_range_and_can_be_bound():
    top = boot._ephemeral_start()
    ports = {boot.free_port() for _ in range(20)}
    assert len(ports) > 1
    for port in ports:
        assert boot.LOW_PORT <= port < top, (port, top)
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_returned():
    with socket.socket() as held:
        held.bind(("127.0.0.1", boot.free_port()))
        held.listen()
        taken = held.getsockname()[1]
        assert all(boot.free_port() != taken for _ in range(200))
