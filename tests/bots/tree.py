"""Actors for the bot tests' tree (importable by dotted path in every actor process).

`ServiceRoot` is a plain `Supervisor` that does what the real root does for its shared services:
a child whose id is a service key (ratelimit, eventbus, store, metrics) is put into the env of
every child started after it under that key, and a restarted service is announced with
`EnvUpdate`. So the tests build exactly the fleet's shape: root -> [ratelimit, eventbus, (store)]
then BotGroups -> [backend, bot].

`Silent` swallows every request: the store or rate limiter that never answers.
`MetricsSink` stands in for the metrics exporter: it keeps the latest `MetricsReport` of every
source and answers `GetReports` with them.
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class GetReports:
    request_id: str = ""


@dataclass(frozen=True)
class Reports:
    request_id: str
    samples: dict          # source -> {(family, labels): value}


class MetricsSink(FleetActor):
    kind = "metrics"

    def on_start(self, args):
        self.latest: dict = {}

    def on_MetricsReport(self, msg, sender):
        self.latest[msg.source] = {(fam, labels): value for fam, labels, value in msg.samples}

    def on_LifecycleEvent(self, msg, sender):
        """Supervisors send these to 'metrics' too; not needed here."""

    def on_GetReports(self, msg: GetReports, sender):
        self.send(sender, Reports(msg.request_id, dict(self.latest)))
