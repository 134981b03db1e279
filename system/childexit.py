"""Keep thespian from losing the exit notice of a child (processes base).

thespian learns that a child process died from SIGCHLD: it checks which of its children are no
longer alive and sends itself a `ChildActorExited` for each. But after handling any such notice
it checks liveness once more (`_childExited`) and silently forgets every child that has died
since, without a notice. So of two children that die at nearly the same moment (a bot group's
backend and bot, both children of the bots supervisor: actors/hosted.py) the second one can
vanish: its supervisor never learns it is gone and never restarts it, and the parent waits for
it forever when it exits itself. Seen in the group-kill tests about one run in two.

`install()` replaces that second check with one that reports the children it finds dead, like
the SIGCHLD path does. It is done once in the process that starts thespian (every actor process
is a fork of it). The supervisor also counts a child whose process is gone as exited without a
notice (Supervisor.exit_unnoticed), in case thespian loses one some other way.
"""
from __future__ import annotations

import logging

from thespian.actors import ChildActorExited
from thespian.system import multiprocCommon
from thespian.system.addressManager import CannotPickleAddress
from thespian.system.transport import TransmitIntent
from thespian.system.utilis import partition, thesplog


def _child_exited(self, childAddr):
    """Replacement for thespian's MultiProcReplicator._childExited (called while a
    ChildActorExited for `childAddr` is handled): drop the dead children, and report those
    other than `childAddr` instead of forgetting them."""
    self._child_procs, dead = partition(self._checkChildLiveness,
                                        getattr(self, "_child_procs", []))
    for each in dead:
        addr = getattr(each, "childRealAddr", each.childAddr)
        if addr == childAddr or each.childAddr == childAddr:
            continue     # the one being handled now
        try:
            self.transport.scheduleTransmit(
                None, TransmitIntent(self.transport.myAddress, ChildActorExited(addr)))
        except CannotPickleAddress:
            thesplog("child %s is dead but cannot translate address to properly handle it",
                     addr, level=logging.ERROR)


def install() -> None:
    multiprocCommon.MultiProcReplicator._childExited = _child_exited
