"""Test actors for the metrics tests (importable by dotted path in every actor process).

- `Emitter`: plays one role of the fleet (bot, backend, ratelimit, store, eventbus) and reports a
  steady, known traffic pattern through a real `MetricsBuffer` every `period` seconds; with
  `crash_once_file` it crashes once after `crash_after_ticks` ticks (the file remembers that it
  did, across the restart), so the exporter sees a restarted source.
- `SnapshotRoot`: a `Supervisor` that pushes `TreeSnapshot`s of its whole subtree to
  `env["metrics"]` every `snapshot_period` seconds and on every lifecycle event, as the real root
  does.
"""
from __future__ import annotations

import os

from actors.supervisor import Supervisor
from actors.base import FleetActor
from messages.lifecycle import TreeStatusRequest
from system.metrics_client import MetricsBuffer, tree_snapshot

ROLES = ("bot", "backend", "ratelimit", "store", "eventbus", "idle")


class Emitter(FleetActor):
    """Args: role (one of ROLES), bot ("alpha"), period (0.2 s), crash_once_file,
    crash_after_ticks (5)."""

    def on_start(self, args):
        self.role = args.get("role", "idle")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self.bot = args.get("bot", "alpha")
        self.crash_file = args.get("crash_once_file", "")
        self.crash_after = int(args.get("crash_after_ticks", 5))
        self.metrics = MetricsBuffer(self.path)
        self.ticks = 0
        self.every("tick", float(args.get("period", 0.2)))
        self.tick()

    def on_timer(self, name):
        if name == "tick":
            self.tick()

    def tick(self):
        self.ticks += 1
        m, bot, n = self.metrics, self.bot, self.ticks
        if self.role == "bot":
            m.inc("tgfleet_bot_updates_total", 3, bot=bot)
            m.inc("tgfleet_bot_actions_total", 2, bot=bot, action="send_message", result="ok")
            m.inc("tgfleet_bot_actions_total", 1 if n % 3 == 0 else 0, bot=bot,
                  action="send_message", result="error")
            m.inc("tgfleet_bot_handler_errors_total", 1 if n % 4 == 0 else 0, bot=bot,
                  handler="echo")
            m.inc("tgfleet_bot_dedup_hits_total", 1, bot=bot)
            m.set("tgfleet_bot_queue_depth", n % 5, bot=bot)
            m.inc("tgfleet_bot_queue_drops_total", 0, bot=bot)
            m.set("tgfleet_bot_last_update_age_seconds", 0.0, bot=bot)
            for v in (0.004, 0.03, 0.2):
                m.observe("tgfleet_e2e_latency_seconds", v, bot=bot)
        elif self.role == "backend":
            m.set("tgfleet_backend_connected", 1, bot=bot, library="telethon")
            m.set("tgfleet_backend_requests_in_flight", n % 3, bot=bot)
            m.inc("tgfleet_backend_reconnects_total", 0, bot=bot)
            m.set("tgfleet_circuit_state", 0, bot=bot)
            m.inc("tgfleet_retries_total", 1 if n % 2 == 0 else 0, bot=bot)
        elif self.role == "ratelimit":
            m.inc("tgfleet_ratelimit_grants_total", 2, bot=bot)
            m.observe("tgfleet_ratelimit_wait_seconds", 0.002, bot=bot)
            m.observe("tgfleet_ratelimit_wait_seconds", 0.3, bot=bot)
            m.inc("tgfleet_flood_waits_total", 1 if n % 3 == 1 else 0, bot=bot)
            m.inc("tgfleet_flood_penalty_seconds_total", 3 if n % 3 == 1 else 0, bot=bot)
        elif self.role == "store":
            m.observe("tgfleet_store_write_seconds", 0.0008)
            m.observe("tgfleet_store_write_seconds", 0.004)
            m.set("tgfleet_store_rows", 10 + n, table="audit")
            m.set("tgfleet_store_rows", 100, table="dedup")
        elif self.role == "eventbus":
            m.inc("tgfleet_eventbus_published_total", 1, topic="news")
        m.flush(self)
        if self.crash_file and n >= self.crash_after and not os.path.exists(self.crash_file):
            with open(self.crash_file, "w") as fh:
                fh.write(f"{self.path} crashed at tick {n}\n")
            raise RuntimeError("emitter crash requested")


class SnapshotRoot(Supervisor):
    """Args as Supervisor, plus snapshot_period (0.5 s)."""

    def on_start(self, args):
        self.snapshot_period = float(args.get("snapshot_period", 0.5))
        self.snap_seq = 0
        super().on_start(args)
        self.every("snapshot", self.snapshot_period)

    def on_timer(self, name):
        if name == "snapshot":
            self.request_snapshot()
        else:
            super().on_timer(name)

    def on_lifecycle_event(self, ev):
        self.request_snapshot()

    def request_snapshot(self):
        if self.env.get("metrics") is None:
            return
        self.snap_seq += 1
        # the supervisor's own gather collects the rows of every sub-supervisor
        self.send(self.myAddress, TreeStatusRequest(f"snap:{self.snap_seq}"))

    def on_TreeStatus(self, msg, sender):
        if msg.request_id.startswith("snap:") and "|" not in msg.request_id:
            self.send(self.env["metrics"], tree_snapshot(msg.rows))
        else:
            super().on_TreeStatus(msg, sender)
