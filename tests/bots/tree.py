"""Actors for the bot tests' tree (importable by dotted path in every actor process).

`ServiceRoot` is a plain `Supervisor` that does what the real root does for its shared services:
a child whose id is a service key (ratelimit, eventbus, store, metrics) is put into the env of
every child started after it under that key, and a restarted service is announced with
`EnvUpdate`. So the tests build exactly the fleet's shape: root -> [ratelimit, eventbus, (store)]
then BotGroups -> [backend, bot].

`Silent` swallows every request: the store or rate limiter that never answers.
"""
from __future__ import annotations

from actors.base import FleetActor
from actors.supervisor import Supervisor
from messages.lifecycle import EnvUpdate, Started

SERVICES = ("ratelimit", "eventbus", "store", "metrics")


class ServiceRoot(Supervisor):
    def on_Started(self, msg: Started, sender):
        child = self.children.get(msg.child_id)
        if (msg.child_id in SERVICES and child is not None and child.addr == sender
                and child.state == "starting"):
            old = self.child_env.get(msg.child_id)
            if old is not None and old != sender:
                self.on_env_update(EnvUpdate(msg.child_id, sender))
            # before super(): it starts the next child at once, with this env
            self.child_env[msg.child_id] = sender
        super().on_Started(msg, sender)


class Silent(FleetActor):
    kind = "silent"

    def on_unknown(self, msg, sender):
        """Every request ends here, unanswered, on purpose."""
