"""The bots supervisor: one BotGroup (backend, then bot; rest_for_one) per configured bot.

Bot definitions live in the store (created by `ctl create`, or imported from the config file's
`[[bots]]` on first start), so a restart of the system brings back the same fleet. Restart
intensity is counted per bot (`intensity_scope = 'child'`): a bot that keeps crashing is given up
on and shown as failed, while every other bot keeps running.
"""
from __future__ import annotations

import dataclasses
import os

from actors.backends.registry import BACKENDS
from actors.hosted import HostingSupervisor
from actors.supervisor import REST_FOR_ONE, Supervisor
from system import placement
from system.procguard import in_own_process
from messages.lifecycle import AddChild, ChildSpec, WhereIs
from messages.routing import Routed
from messages.store import ListBotConfigs, PutBotConfig, StoreReply



def groups_are_processes(process_unit: str) -> bool:
    """Whether bot groups run as processes hosting their backend and bot: asked for
    (`system.process_unit = "bot"`), and there are processes (the processes base)."""
    return process_unit == "bot" and in_own_process()


def bot_group_spec(cfg: dict, data_dir: str, sup_args: dict, paired: bool = False) -> ChildSpec:
    """The BotGroup child spec for one validated bot config. PAIRED: the group is a process of
    its own with its backend and bot hosted in it (`system.process_unit = "bot"`)."""
    name = cfg["name"]
    backend_args = dict(cfg, data_dir=os.path.join(data_dir, "sessions", name))
    # host: the backend and bot on that member host; the group itself runs hosted in the bots
    # supervisor's process (actors/hosted.py) and creates them there (system/placement.py).
    # Paired, the group is created there and hosts them.
    where = placement.requirements_for(cfg.get("host", ""))
    group_where = None
    if paired:
        group_where, where = where, None
        backend_args["lanes"] = False   # same process as its bot: nothing to stream over
    children = [
        ChildSpec("backend", BACKENDS[cfg["library"]], backend_args, kind="backend",
                  shutdown_timeout=10, requirements=where),
        ChildSpec("bot", "actors.bot.BotActor", dict(cfg), kind="bot", requirements=where),
    ]
    args = {"strategy": REST_FOR_ONE, "children": children,
            "intensity": sup_args.get("intensity", 5), "period": sup_args.get("period", 60),
            "probe_interval": sup_args.get("probe_interval", 2.0),
            "probe_misses": sup_args.get("probe_misses", 3),
            "backoff": sup_args.get("backoff", {})}
    group_class = "actors.hosted.PairedBotGroup" if paired else "actors.supervisor.BotGroup"
    return ChildSpec(name, group_class, args, kind="supervisor", shutdown_timeout=20,
                     requirements=group_where)


class BotsSupervisor(HostingSupervisor):
    """Start.args: bots (config-file bots), data_dir, process_unit, plus the usual supervisor
    args.

    Its children, one BotGroup per bot, run hosted in this process (actors/hosted.py): a
    group's backend and bot are processes of their own, the group is not. With
    `process_unit = "bot"` on the processes base it is the other way round: each group is a
    process and its backend and bot run hosted in it (one process per bot)."""

    def on_start(self, args):
        self.paired = groups_are_processes(args.get("process_unit", ""))
        self.data_dir = args.get("data_dir", "./var")
        self.file_bots = list(args.get("bots", []))
        self.group_args = {k: args[k] for k in ("probe_interval", "probe_misses", "backoff")
                           if k in args}
        super().on_start(dict(args, children=[]))
        store = self.env.get("store")
        if store is None:
            self.boot_bots(self.file_bots)
        else:
            self.send(store, ListBotConfigs("bots:list"))

    def boot_bots(self, cfgs):
        """The fleet's bots at boot: all started side by side (each bot group is independent,
        so startup takes as long as the slowest bot, not the sum of all of them)."""
        for cfg in cfgs:
            if cfg.get("host") and not in_own_process():
                # e.g. stored while the fleet ran on the processes base: it could never start
                self.log.error("bot %s not started: host %r needs system.base = 'processes'",
                               cfg.get("name"), cfg["host"])
                continue
            spec = bot_group_spec(cfg, self.data_dir, self.group_args, self.paired)
            try:
                self.add_spec(spec)
            except ValueError as exc:
                self.log.error("bot %s not started: %s", cfg.get("name"), exc)
                continue
            if cfg.get("enabled", True):
                self.ops.append(("start", spec.id, "nowait"))
        self.advance()

    def add_bot(self, cfg: dict, request_id: str = "", reply_to=None):
        spec = bot_group_spec(cfg, self.data_dir, self.group_args, self.paired)
        self.on_AddChild(AddChild(spec, bool(cfg.get("enabled", True)), request_id),
                         reply_to or self.myAddress)

    def create_child_actor(self, child):
        if self.paired:   # a process of its own, which hosts the group's children
            return Supervisor.create_child_actor(self, child)
        return super().create_child_actor(child)

    def on_WhereIs(self, msg: WhereIs, sender):
        """"<group>/<child>" when groups are processes: asked of the group on SENDER's behalf
        (messages/routing.py), so the answer goes straight back to SENDER."""
        group_id, sep, rest = msg.child_id.partition("/")
        child = self.children.get(group_id)
        if self.paired and child is not None and child.state == "running":
            if not sep:
                Supervisor.on_WhereIs(self, msg, sender)   # the group is a real actor then
                return
            self.send(child.addr, Routed(None, dataclasses.replace(msg, child_id=rest), sender))
            return
        super().on_WhereIs(msg, sender)

    def on_StoreReply(self, msg: StoreReply, sender):
        if msg.request_id != "bots:list":
            return
        if not msg.ok:
            self.log.error("could not load bot configs from the store: %s", msg.error)
            stored = {}
        else:
            stored = dict(msg.value or {})
        for cfg in self.file_bots:   # import config-file bots the store does not know yet
            if cfg["name"] not in stored:
                stored[cfg["name"]] = cfg
                self.send(sender, PutBotConfig(f"bots:import:{cfg['name']}", cfg["name"], cfg))
        self.boot_bots([stored[name] for name in sorted(stored)])

    def on_ChildCommandResult(self, msg, sender):
        if not msg.ok:
            self.log.warning("bot group command %s failed: %s", msg.request_id, msg.error)
