"""A cheaper selector for thespian's TCP transport.

Why: on every pass of its loop (4-5 passes per message) thespian's TCPTransport builds a new
`selectors.DefaultSelector()` (an epoll object), registers every open socket one by one and
closes it again. The cost grows with the number of peers: the store, the rate limiter and
the metrics actor talk to every bot and backend, so with 50 bots each of them registered 100+
descriptors per pass, an epoll_ctl system call and a Python SelectorKey each. Measured at 50
bots and 1 msg/s per bot (about 50 grants and 50 dedup records a second): the rate limiter
used 0.12 cores and the store 0.35; with this selector 0.08 and 0.22 (the whole fleet 1.06
cores, then 0.78).

`LeanSelector` does what the transport uses of a selector (register, select, close) on one
`poll(2)` call: registering only records the descriptor in a dict, and `select` hands the whole
set to the kernel at once. Same results, including for a bad descriptor: epoll refuses it when
it is registered, poll reports POLLNVAL, and both end as the OSError(EBADF) that the
transport's recovery code expects.

`install()` points the transport module's `selectors` name at this module's namespace; it is
done once in the process that starts thespian (every actor process is a fork of it).
"""
from __future__ import annotations

import errno
import math
import select
import selectors
import types

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
_READ_MASK = select.POLLIN | select.POLLPRI
_WRITE_MASK = select.POLLOUT
_DONE_MASK = select.POLLHUP | select.POLLERR      # readable and writable: the call will say


class _Key:
    __slots__ = ("fd", "events")

    def __init__(self, fd: int, events: int):
        self.fd = fd
        self.events = events


class LeanSelector:
    """register / select / close of `selectors.BaseSelector`, for one select per instance."""

    def __init__(self):
        self._fds: dict[int, int] = {}

    def register(self, fileobj, events, data=None):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd < 0:
            raise ValueError(f"invalid file descriptor: {fd}")
        self._fds[fd] = self._fds.get(fd, 0) | events

    def select(self, timeout=None):
        poller = select.poll()
        for fd, events in self._fds.items():
            mask = (_READ_MASK if events & EVENT_READ else 0) | \
                   (_WRITE_MASK if events & EVENT_WRITE else 0)
            poller.register(fd, mask)
        if timeout is None:
            ms = None
        else:
            ms = max(0, math.ceil(timeout * 1000))
        ready = []
        for fd, revents in poller.poll(ms):
            if revents & select.POLLNVAL:
                raise OSError(errno.EBADF, f"bad file descriptor {fd}")
            wanted = self._fds.get(fd, 0)
            got = 0
            if revents & (_READ_MASK | _DONE_MASK):
                got |= EVENT_READ
            if revents & (_WRITE_MASK | _DONE_MASK):
                got |= EVENT_WRITE
            got &= wanted
            if got:
                ready.append((_Key(fd, wanted), got))
        return ready

    def close(self):
        self._fds.clear()


_SHIM = types.SimpleNamespace(DefaultSelector=LeanSelector, EVENT_READ=EVENT_READ,
                              EVENT_WRITE=EVENT_WRITE)


def install() -> None:
    """Make thespian's TCP transport use LeanSelector (idempotent)."""
    from thespian.system.transport import TCPTransport
    TCPTransport.selectors = _SHIM
