"""system/lane.py: the bot <-> backend stream used on the processes base (real Unix sockets)."""
import pickle
import socket

import pytest

from messages.telegram import UpdateBatch
from system import lane as lanes


def pair():
    listener = lanes.LaneListener()
    client = lanes.connect(listener.address, listener.token, "alpha")
    (server,) = listener.accept()
    return listener, client, server


def read_all(lane, want, rounds=200):
    got = []
    for _ in range(rounds):
        got += lane.receive()
        if len(got) >= want or lane.closed:
            break
    return got


def test_hello_then_messages_in_order_both_ways():
    listener, client, server = pair()
    msgs = [UpdateBatch("alpha", (i,)) for i in range(50)]
    for m in msgs:
        assert client.send(m)
    name, first = listener.verify(server)
    assert name == "alpha" and server.verified is True
    got = first + read_all(server, 50 - len(first))
    assert got == msgs
    assert server.send(("answer", 1)) and client.receive() == [("answer", 1)]
    listener.close()


def test_large_messages_survive_partial_writes():
    listener, client, server = pair()
    listener.verify(server)
    big = [b"x" * (3 * 1024 * 1024 + i) for i in range(4)]      # more than a socket buffer
    for b in big:
        assert client.send(b)
    assert client.pending > 0          # the socket took part of it; the rest waits
    got = []
    for _ in range(1000):
        got += server.receive()
        client.flush()
        if len(got) == len(big):
            break
    assert got == big and client.pending == 0
    listener.close()


def test_wrong_token_is_refused_without_unpickling():
    listener = lanes.LaneListener()
    bad = lanes.connect(listener.address, "0" * 32, "mallory")
    (server,) = listener.accept()
    with pytest.raises(lanes.LaneError, match="wrong hello"):
        listener.verify(server)
    assert server.closed
    listener.close()


def test_a_pickle_instead_of_the_hello_is_never_loaded():
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("the listener unpickled an unverified frame",))
    listener = lanes.LaneListener()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(listener.address)
    data = pickle.dumps(Boom())
    s.sendall(lanes.HEADER.pack(len(data)) + data)
    (server,) = listener.accept()
    with pytest.raises(lanes.LaneError):
        listener.verify(server)
    s.close()
    listener.close()


def test_garbage_after_the_hello_closes_the_lane_and_keeps_what_came_before():
    listener, client, server = pair()
    client.send(("ok", 1))
    client.sock.send(lanes.HEADER.pack(5) + b"\x80junk")
    name, first = listener.verify(server)
    got = first + read_all(server, 1)
    assert ("ok", 1) in got and server.closed
    listener.close()


def test_peer_gone_means_closed_and_send_returns_false():
    listener, client, server = pair()
    listener.verify(server)
    server.close()
    for _ in range(10):              # the first writes may still land in the socket buffer
        if not client.send(("late", 0)):
            break
    assert client.closed
    assert client.send(("after", 1)) is False
    listener.close()


def test_connect_to_nothing_raises_lane_error():
    with pytest.raises(lanes.LaneError):
        lanes.connect("\0tgfleet-lane-nobody-listens", "0" * 32, "alpha")
