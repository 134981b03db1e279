"""Wake an actor from a background thread, on any thespian base.

Actors never block in `receiveMessage`, so the work that does block (an asyncio client loop, a
TDLib receive loop, an aiosqlite connection) lives in a thread the actor owns. That thread hands
results back through a `Bridge`: it appends to a locked deque and writes one byte to a
socketpair. On multiprocTCPBase the actor returns `ThespianWatch([fd])` from every
`receiveMessage` call and thespian wakes it with a `WatchMessage`. On the in-process base
(simpleSystemBase ignores watches) the runner selects on every registered bridge fd and tells the
actor `BridgeWake()`. Either way the actor then calls `drain()` in its own context.

On the in-process base a post marked `inline` may instead deliver the wake-up in the posting
thread itself when the runner is idle (system/inline.py): no hand-over to another thread.
"""
from __future__ import annotations

import collections
import socket
import threading

from thespian.actors import ThespianWatch

from system import inline

# fd -> (actor address, bridge): read by the in-process runner; unused in actor processes.
_REGISTRY: dict[int, tuple[object, "Bridge"]] = {}
_REGISTRY_LOCK = threading.Lock()


def registered() -> list[tuple[int, object, "Bridge"]]:
    with _REGISTRY_LOCK:
        return [(fd, addr, br) for fd, (addr, br) in _REGISTRY.items()]


class Bridge:
    """A thread-safe inbox for one actor plus the descriptor that wakes it."""

    def __init__(self, actor_address):
        self._items: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._signaled = False
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self.fd = self._rsock.fileno()
        self.closed = False
        self.address = actor_address
        self._watch = ThespianWatch([self.fd])   # returned after every delivery: made once
        # The in-process base's driver when created by an actor there; None on the processes
        # base (no runner: thespian watches `fd`).
        self._driver = inline.current()
        with _REGISTRY_LOCK:
            _REGISTRY[self.fd] = (actor_address, self)

    def post(self, item, hot: bool = False) -> None:
        """Called from any thread: queue `item` and wake the actor (one byte per burst).
        With `hot` (hot-path items only), deliver it in this thread if the in-process base
        is idle instead of waking its runner."""
        with self._lock:
            if self.closed:
                return
            self._items.append(item)
            if self._signaled:
                return
            drv = self._driver if hot else None
            if drv is None:
                self._signaled = True
        if drv is not None:
            if drv.deliver(self.address):
                return
            with self._lock:     # the base was busy: wake the runner, unless drained meanwhile
                if self.closed or self._signaled or not self._items:
                    return
                self._signaled = True
        self._send_wake()

    def _send_wake(self) -> None:
        try:
            self._wsock.send(b"x")
        except BlockingIOError:
            pass  # a wake-up byte is already pending; the drain will see every item
        except OSError:
            pass  # closed concurrently by the owner; nothing left to wake

    def drain(self, read: bool = True) -> list:
        """Called by the owning actor: everything posted since the last drain, in order.
        `read=False` when nothing saw a wake-up byte (an inline run: its post wrote none):
        the read would only raise BlockingIOError, ~10 us on a light-load message's hot path.
        A byte left by a post racing this drain makes select() fire, and that drain reads it."""
        # One read is enough: a post writes a byte only when none is pending since the last
        # drain, so at most a couple are ever waiting (a post racing this drain may add one
        # more, which costs a wake-up that finds nothing). Reading until EAGAIN cost a raised
        # BlockingIOError per drain, i.e. per update batch on the in-process base.
        if read:
            try:
                self._rsock.recv(4096)
            except (BlockingIOError, InterruptedError):
                pass  # woken without a byte (the runner checks every bridge it selected)
            except OSError:
                pass  # closed: the items already queued are still returned below
        with self._lock:
            self._signaled = False
            items = list(self._items)
            self._items.clear()
        return items

    def watch(self):
        """What `receiveMessage` returns so the TCP base keeps watching this bridge."""
        return None if self.closed else self._watch

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        with _REGISTRY_LOCK:
            _REGISTRY.pop(self.fd, None)
        self._rsock.close()
        self._wsock.close()
