"""The root supervisor: starts the tree in order, keeps the shared services' addresses current,
and keeps the metrics exporter's view of the tree (TreeSnapshot, readiness) fresh.

Order (and reverse on stop): metrics exporter, store, rate limiter, event bus, the bots
supervisor (one BotGroup per bot), then the control actor — control comes last so that every
command it accepts finds the services it needs already running.
"""
from __future__ import annotations

import os

from thespian.actors import ActorExitRequest

from actors.supervisor import ONE_FOR_ONE, Supervisor
from messages.lifecycle import (ChildSpec, EnvUpdate, Started, Stop, TreeStatus,
                                TreeStatusRequest)
from messages.system import RootExited
from system.metrics_client import tree_snapshot
from system.procguard import end_admin, in_own_process, pid_alive

SERVICES = ("metrics", "store", "ratelimit", "eventbus", "bots", "control")
LAUNCHER_CHECK_S = 1.0
ORPHAN_STOP_S = 30.0       # an orderly stop after the launcher vanished may take this long


def root_children(cfg: dict) -> list[ChildSpec]:
    sysc, sup = cfg["system"], cfg["supervision"]
    data_dir = os.path.abspath(sysc["data_dir"])
    return [
        ChildSpec("metrics", "actors.metrics.MetricsExporter",
                  {"host": cfg["metrics"]["host"], "port": cfg["metrics"]["port"],
                   "endpoint_file": os.path.join(data_dir, "metrics.json")}, kind="metrics"),
        ChildSpec("store", "actors.store.StoreActor",
                  {"path": os.path.abspath(cfg["store"]["path"]),
                   "synchronous": cfg["store"]["synchronous"],
                   "dedup_max": cfg["store"]["dedup_max"],
                   "record_delay_s": cfg["store"]["record_delay_s"]},
                  kind="store", shutdown_timeout=10),
        ChildSpec("ratelimit", "actors.ratelimit.RateLimiterActor", dict(cfg["ratelimit"]),
                  kind="ratelimit"),
        ChildSpec("eventbus", "actors.eventbus.EventBus", {}, kind="eventbus"),
        ChildSpec("bots", "actors.bots.BotsSupervisor",
                  {"bots": cfg.get("bots", []), "data_dir": data_dir,
                   "process_unit": sysc["process_unit"],
                   "strategy": ONE_FOR_ONE, "intensity_scope": "child",
                   "intensity": sup["bot_intensity"], "period": sup["bot_period_s"],
                   "probe_interval": sup["probe_interval_s"],
                   "probe_misses": sup["probe_misses"],
                   "backoff": {"base_s": sup["backoff_base_s"], "max_s": sup["backoff_max_s"],
                               "reset_after_s": sup["backoff_reset_after_s"]}},
                  kind="supervisor", shutdown_timeout=30),
        ChildSpec("control", "actors.control.ControlActor",
                  {"host": sysc["bind_host"], "port": cfg["control"]["port"],
                   "token_file": os.path.abspath(cfg["control"]["token_file"]),
                   "max_message_bytes": cfg["control"]["max_message_bytes"],
                   "config": cfg}, kind="control"),
    ]


class RootSupervisor(Supervisor):
    """Start.args: the validated config (system/config.py) as `config`."""

    def on_start(self, args):
        cfg = args["config"]
        sup = cfg["supervision"]
        os.makedirs(cfg["system"]["data_dir"], exist_ok=True)
        self.snapshot_pending = False
        self.env = dict(self.env, root=self.myAddress)   # every descendant can reach the root
        # Processes base: thespian's admin daemonizes, so if the launcher is SIGKILLed nothing
        # would end the admin and the actors under it. The root watches the launcher and, when
        # it is gone, stops the tree in order and then ends the admin (its own parent); every
        # actor process dies with its parent (procguard), so nothing is left.
        self.launcher_pid = self.env.get("launcher_pid") or 0
        self.launcher_gone = False
        super().on_start({
            "strategy": ONE_FOR_ONE,
            "intensity": sup["intensity"], "period": sup["period_s"],
            "probe_interval": sup["probe_interval_s"], "probe_misses": sup["probe_misses"],
            "backoff": {"base_s": sup["backoff_base_s"], "max_s": sup["backoff_max_s"],
                        "reset_after_s": sup["backoff_reset_after_s"]},
            "children": args.get("children") or root_children(cfg),
        })
        self.every("snapshot", 5.0)   # changes push a snapshot at once (snapshot_soon)
        if self.launcher_pid and in_own_process():
            self.every("launcher", LAUNCHER_CHECK_S)

    def on_Started(self, msg: Started, sender):
        child = self.children.get(msg.child_id)
        valid = child is not None and child.addr == sender and child.state == "starting"
        restarted = valid and child.restarts > 0
        if valid and msg.child_id in SERVICES:
            # before super(): it goes on to start the next child, which needs this address
            self.child_env[msg.child_id] = sender
        super().on_Started(msg, sender)
        if valid and msg.child_id in SERVICES:
            if restarted:   # everyone holding the old address must learn the new one
                update = EnvUpdate(msg.child_id, sender)
                for other in self.children.values():
                    if other.addr is not None and other is not child and \
                            other.state in ("running", "starting"):
                        self.send(other.addr, update)

    def on_timer(self, name):
        if name == "launcher":
            if not self.launcher_gone and not pid_alive(self.launcher_pid):
                self.launcher_gone = True
                self.cancel_timer("launcher")
                self.log.error("root: the launcher (pid %d) is gone: stopping the fleet and "
                               "thespian's admin, so nothing is left running",
                               self.launcher_pid)
                self.after("orphan_kill", ORPHAN_STOP_S)
                self.on_stop_request(Stop("launcher gone"), self.myAddress)
        elif name == "orphan_kill":
            self.end_admin()
        elif name in ("snapshot", "snapshot_soon"):
            self.snapshot_pending = False
            self.on_TreeStatusRequest(TreeStatusRequest("snapshot"), self.myAddress)
        else:
            super().on_timer(name)

    def on_lifecycle_event(self, ev):
        if not self.snapshot_pending:   # push the change to /metrics within ~50 ms
            self.snapshot_pending = True
            self.after("snapshot_soon", 0.05)

    def on_LifecycleEvent(self, ev, sender):
        """An event from a supervisor deeper in the tree: refresh the snapshot soon."""
        self.on_lifecycle_event(ev)

    def on_TreeStatus(self, msg: TreeStatus, sender):
        if msg.request_id == "snapshot" and sender == self.myAddress:
            metrics = self.child_env.get("metrics")
            if metrics is not None:
                must_run = {r.path for r in msg.rows if r.state != "stopped"}
                self.send(metrics, tree_snapshot(msg.rows, must_run))
            return
        super().on_TreeStatus(msg, sender)

    def on_MetricsEndpoint(self, msg, sender):
        self.log.info("metrics on http://%s:%s/metrics", msg.host, msg.port)

    def finish_escalation(self, reason: str):
        if self.launcher_gone:
            self.end_admin()      # nobody is left to receive RootExited; leave nothing behind
            return
        if self.parent is not None:
            self.send(self.parent, RootExited(1, reason))
        self._run_stop()
        self.send(self.myAddress, ActorExitRequest())

    def before_exit(self):
        if self.launcher_gone:
            self.end_admin()
            return
        if self.parent is not None:
            self.send(self.parent, RootExited(0, "stopped"))

    def end_admin(self):
        """SIGKILL thespian's admin (this process's parent); this process and thespian's logger
        follow it (parent-death signal)."""
        end_admin(self.launcher_pid)
