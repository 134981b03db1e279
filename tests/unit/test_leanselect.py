"""system/leanselect.py answers like selectors.DefaultSelector for what thespian's TCP transport
asks of it: readable and writable descriptors, timeouts, a closed peer, a bad descriptor."""
import os
import socket
import time

import pytest

from system import leanselect
from system.leanselect import EVENT_READ, EVENT_WRITE, LeanSelector


def _ready(sel, reads, writes, timeout):
    for fd in reads:
        sel.register(fd, EVENT_READ)
    for fd in writes:
        sel.register(fd, EVENT_WRITE)
    got = sorted((key.fd, ev) for key, ev in sel.select(timeout))
    sel.close()
    return got


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_same_answers_as_the_default_selector(pair):
    import selectors
    a, b = pair
    for make in (selectors.DefaultSelector, LeanSelector):
        # nothing to read yet, a socket can be written at once
        assert _ready(make(), [a.fileno()], [b.fileno()], 0) == [(b.fileno(), EVENT_WRITE)]
        b.send(b"x")
        assert _ready(make(), [a.fileno()], [], 0) == [(a.fileno(), EVENT_READ)]
        assert a.recv(10) == b"x"


def test_timeout_waits_and_a_file_object_is_accepted(pair):
    a, _ = pair
    t0 = time.monotonic()
    assert _ready(LeanSelector(), [a], [], 0.05) == []
    assert time.monotonic() - t0 >= 0.045


def test_a_closed_peer_is_readable(pair):
    a, b = pair
    b.close()
    assert _ready(LeanSelector(), [a.fileno()], [], 0) == [(a.fileno(), EVENT_READ)]


def test_a_bad_descriptor_raises_ebadf_like_epoll():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as err:
        _ready(LeanSelector(), [r], [], 0)
    assert err.value.errno == 9
    with pytest.raises(ValueError):
        LeanSelector().register(-1, EVENT_READ)


def test_install_points_thespians_tcp_transport_at_it():
    from thespian.system.transport import TCPTransport
    leanselect.install()
    assert TCPTransport.selectors.DefaultSelector is LeanSelector
    check = TCPTransport.TCPTransport._check_fd     # the transport's own bad-fd probe
    s = socket.socket()
    check(s.fileno())
    fd = s.fileno()
    s.close()
    with pytest.raises(OSError):
        check(fd)
