"""MemberGuard: ends a member host's actor system when its launcher is gone.

thespian's admin daemonizes, so nothing ends it, or the bot groups placed under it, when the
`tgfleet member` launcher is SIGKILLed; on the leader the root supervisor watches its launcher
for the same reason (actors/root.py). This small actor is the member's equivalent: it runs in
the member's own system, polls the launcher's pid and, once it is gone, SIGKILLs thespian's admin
(its own parent). Every actor process of the member dies with the admin (parent-death signal,
system/procguard.py), so no session is left open. The leader's supervisors see the groups exit
and place them again once a member with that host is back.
"""
from __future__ import annotations

import os

from actors.base import FleetActor
from system.procguard import end_admin, in_own_process, pid_alive

CHECK_S = 0.5


class MemberGuard(FleetActor):
    kind = "guard"

    def on_start(self, args):
        self.launcher_pid = int(self.env.get("launcher_pid") or 0)
        if self.launcher_pid and in_own_process():
            self.every("launcher", CHECK_S)

    def on_timer(self, name):
        if name == "launcher" and not pid_alive(self.launcher_pid):
            self.cancel_timer("launcher")
            self.log.error("member guard: the launcher (pid %d) is gone: ending thespian's "
                           "admin (pid %d) and every actor placed on this host",
                           self.launcher_pid, os.getppid())
            end_admin(self.launcher_pid)
