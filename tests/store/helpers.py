"""Test-only actors and messages for the store tests (importable in every actor process as
`tests.store.helpers`)."""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from actors.supervisor import Supervisor


@dataclass(frozen=True)
class FindChild:
    child_id: str


@dataclass(frozen=True)
class ChildInfo:
    child_id: str
    addr: object
    state: str
    pid: int
    restarts: int


class AddressingSupervisor(Supervisor):
    """A Supervisor that also tells a test where a child currently is, so the test can talk to
    the child directly (nothing registers a global name)."""

    def on_FindChild(self, msg: FindChild, sender):
        child = self.children.get(msg.child_id)
        if child is None:
            self.send(sender, ChildInfo(msg.child_id, None, "absent", 0, 0))
        else:
            self.send(sender, ChildInfo(msg.child_id, child.addr, child.state, child.pid,
                                        child.restarts))


def rid() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex[:12]


def store_threads() -> list[str]:
    """The store's threads in this process (its loop and aiosqlite's connection thread)."""
    return [t.name for t in threading.enumerate()
            if t.name.startswith("loop-store") or "_connection_worker_thread" in t.name]
