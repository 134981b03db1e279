"""Actors hosted in another actor's process, in two shapes.

1. `GroupHost` (the bots supervisor, `system.process_unit = "actor"` or the in-process base):
   the bot groups have no process of their own (below).
2. `LeafHost` (`PairedBotGroup`, `system.process_unit = "bot"`, the processes base's default):
   each bot group is a process and hosts its backend and bot, which stay reachable from every
   process (messages/routing.py). See the class.

Supervisors hosted in their parent's process: the bot groups have no process of their own.

Why: on the processes base every actor is an OS process, and a bot group's supervisor (one per
bot) does almost nothing, yet costs what any Python process costs here: ~5 MB PSS each even with
memory merging, 50 MB of a 10-bot fleet's ~330 MB under load (bench/RESULTS.md, twelfth
session). A `GroupHost` (the bots supervisor) runs each of its children, a `BotGroup`, as an
object inside its own process instead. The group is the same class with the same state machine,
operation queue, timers, probes and restart rules; only its transport changes:
- its address is a `HostedAddress`; messages between the host and a group are queued and
  delivered in the host's process right after the message being handled (never re-entrantly,
  always in order), so each still sees one message at a time;
- the actors it creates (backend, bot) are created by the host, so they are the host's OS
  children (parent-death signal and all). What they send their parent arrives at the host,
  which hands it to the group that created them; so do their exit notices;
- its timers are the host's wake-ups, tagged with the group's address;
- when it exits (clean stop, escalation, crash, or killed by the host), the host does what
  thespian and the parent-death signal did when a group was a process: children still running
  are killed (SIGKILL on this machine, ActorExitRequest otherwise), their pids are handed to the
  next incarnation so it does not open a second session beside them, and the host gets a
  `ChildActorExited` for the group.
thespian sees none of this: to it, the host is one actor. A group placed on a member host
(`host = "b"`) stays here and creates its backend and bot there (their specs carry the
requirement); those watch this process's probes like any actor whose parent is elsewhere.
"""
from __future__ import annotations

import collections
import dataclasses
import importlib
import os
import signal

from thespian.actors import (ActorExitRequest, ChildActorExited, ThespianWatch, WakeupMessage,
                             WatchMessage)

from actors.supervisor import BotGroup, Supervisor
from messages.lifecycle import ChildAddress, Start, Started, WhereIs
from messages.routing import HostedAddress, Routed
from system import placement

_WAKE_TAG = "hosted"


class HostedRef:
    """What thespian gives an actor as `_myRef` (its address, createActor, send, wake-ups),
    for an actor that lives inside its host: every call goes through the host."""

    def __init__(self, host: "GroupHost", address: HostedAddress):
        self.host = host
        self.address = address

    def createActor(self, actorClass, targetActorRequirements=None, globalName=None,  # noqa: N802
                    sourceHash=None):
        addr = self.host.createActor(actorClass, targetActorRequirements=targetActorRequirements,
                                     globalName=globalName, sourceHash=sourceHash)
        self.host.own_child(addr, self.address)
        return addr

    def actor_send(self, target, msg):
        self.host.send_from_hosted(self.address, target, msg)

    def wakeupAfter(self, timePeriod, payload=None):  # noqa: N802 - thespian's name
        self.host.wakeupAfter(timePeriod, payload=(_WAKE_TAG, self.address, payload))


def import_class(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


class GroupHost:
    """Mixin for a Supervisor whose children all run hosted in its process (see the module
    docstring). Put it first: `class BotsSupervisor(GroupHost, Supervisor)`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hosted: dict[HostedAddress, object] = {}
        # real child -> its group. thespian's addresses are not hashable, and the one
        # createActor returns is a placeholder until the child exists (it compares equal to
        # the final one, its string does not): a list searched by ==, plus a cache by the
        # string of the address messages actually come from.
        self.hosted_owner: list[tuple[object, HostedAddress]] = []
        self._owner_seen: dict[str, tuple] = {}
        self.hosted_graves: dict[str, dict] = {}   # group id -> killed children's pids
        self._local: collections.deque = collections.deque()
        self._hosted_seq = 0

    # ---- the Supervisor hook: a child is an object here, not a new actor -------------------
    def create_child_actor(self, child):
        self._hosted_seq += 1
        # the pid too: a later incarnation of this host may get the same port, and an answer
        # meant for one of its predecessor's children must not reach a child of its own
        addr = HostedAddress(f"{self.path}/{child.spec.id}", f"{os.getpid()}.{self._hosted_seq}",
                             self.reachable_host())
        inst = import_class(child.spec.actor_class)()
        inst._myRef = HostedRef(self, addr)
        inst.inherited_pids = self.hosted_graves.pop(child.spec.id, {})
        self.hosted[addr] = inst
        return addr

    def reachable_host(self):
        """The address hosted children are reached through from other processes; None: they
        are known only in this process (a bot group needs no address outside it)."""
        return None

    # ---- transport ------------------------------------------------------------------------
    def send(self, target, msg):
        if isinstance(target, HostedAddress) and target.host in (None, self.myAddress):
            if isinstance(msg, Start):
                # Same process as its parent: no parent pid to bind to (the check that this
                # process's parent is the supervisor would fail, and kill the host).
                msg = dataclasses.replace(msg, env={k: v for k, v in msg.env.items()
                                                    if k != "parent_pid"})
            self._local.append((target, msg, self.myAddress))
            return
        super().send(target, msg)

    def send_from_hosted(self, source: HostedAddress, target, msg):
        if isinstance(target, HostedAddress) or target == self.myAddress:
            self._local.append((target, msg, source))
        else:
            super().send(target, msg)   # to a real actor, from this process's address

    def receiveMessage(self, msg, sender):  # noqa: N802 - thespian's name
        if type(msg) is Routed and msg.target is not None:   # for a hosted actor, from afar
            if msg.source is not None:
                sender = msg.source
            if msg.target in self.hosted:
                self._deliver(msg.target, msg.msg, sender)
            # else: for an incarnation that has exited (dropped, as thespian drops those)
            self._drain()
            return self.host_watch(None)
        try:
            owner, msg = self._owner_of(msg, sender)
        except Exception as exc:   # let it crash, as FleetActor does for its own handlers
            self._crash(exc)
            return self.host_watch(None)
        if owner is None:
            result = super().receiveMessage(msg, sender)
        else:
            result = None
            self._deliver(owner, msg, sender)
        self._drain()
        return self.host_watch(result)

    def host_watch(self, own):
        """What receiveMessage returns to thespian: the host's own watch (hosted supervisors
        watch nothing)."""
        return own

    def _owner_of(self, msg, sender):
        """(the hosted group a message from thespian is for, or None for the host itself; the
        message as that one must see it: a group's wake-up without the host's tag)."""
        if isinstance(msg, WakeupMessage):
            payload = msg.payload
            if isinstance(payload, tuple) and len(payload) == 3 and payload[0] == _WAKE_TAG:
                return payload[1], WakeupMessage(msg.delayPeriod, payload[2])
            return None, msg
        if isinstance(msg, ChildActorExited):
            return self.disown_child(msg.childAddress), msg
        if sender is None or not self.hosted_owner:
            return None, msg
        key = str(sender)
        entry = self._owner_seen.get(key)
        if entry is None or not self._current(entry):
            entry = self._find(sender)
            if entry is None:
                self._owner_seen.pop(key, None)
                return None, msg
            self._owner_seen[key] = entry
        return entry[1], msg

    def own_child(self, address, group: HostedAddress):
        self.hosted_owner.append((address, group))

    def disown_child(self, address):
        """The group that created ADDRESS (None: not one of theirs), forgotten from now on."""
        entry = self._find(address)
        if entry is None:
            return None
        self.hosted_owner = [e for e in self.hosted_owner if e is not entry]
        self._owner_seen.pop(str(address), None)
        return entry[1]

    def _current(self, entry) -> bool:
        """Whether a group still has this child: a group that ended, or counted the child as
        exited without thespian's notice (Supervisor.exit_unnoticed), no longer has it, and a
        TCP port number can come back as another child's address."""
        inst = self.hosted.get(entry[1])
        return inst is not None and \
            any(c.addr is entry[0] for c in getattr(inst, "children", {}).values())

    def _find(self, address):
        """The current entry for ADDRESS (entries no longer current are dropped on the way)."""
        found = None
        keep = []
        for entry in self.hosted_owner:
            if not self._current(entry):
                continue
            keep.append(entry)
            if found is None and entry[0] == address:
                found = entry
        self.hosted_owner = keep
        return found

    def _drain(self):
        while self._local:
            target, msg, sender = self._local.popleft()
            if isinstance(target, HostedAddress):
                self._deliver(target, msg, sender)
            else:
                super().receiveMessage(msg, sender)

    def _deliver(self, addr: HostedAddress, msg, sender):
        inst = self.hosted.get(addr)
        if inst is None:
            return   # to an incarnation that has exited (a late probe answer, a stale timer)
        inst.receiveMessage(msg, sender)   # FleetActor: its own exceptions crash only it
        if isinstance(msg, ActorExitRequest):
            self._end_hosted(addr, inst)

    def _end_hosted(self, addr: HostedAddress, inst):
        """A hosted group exited: end what it left running, then tell the host (its parent)."""
        del self.hosted[addr]
        graves = {}
        for cid, child in getattr(inst, "children", {}).items():
            if child.addr is None:
                continue
            local = child.pid and child.pid != os.getpid() and \
                placement.same_machine(child.system)
            if local:
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                graves[cid] = (child.pid, child.system)
            else:
                super().send(child.addr, ActorExitRequest())
        if graves:
            self.hosted_graves[addr.path.rsplit("/", 1)[-1]] = graves
        self._local.append((self.myAddress, ChildActorExited(addr), self.myAddress))

    # ---- what the host keeps for itself ----------------------------------------------------
    def exit_request(self) -> ActorExitRequest:
        """Not recursive: every child was stopped by its group before the host exits. thespian
        would otherwise send an exit request to every child it still lists, and wait for each
        one, including creations still pending on a member host that died, which held the
        fleet's stop past its 20 s limit in the multi-host test."""
        return ActorExitRequest(recursive=False)

    def on_Started(self, msg: Started, sender):
        if isinstance(sender, HostedAddress):
            # It runs in this process: no pid of its own to show, signal or wait for.
            msg = dataclasses.replace(msg, pid=0)
        super().on_Started(msg, sender)

    def on_WhereIs(self, msg: WhereIs, sender):
        """"<group>/<child>" is answered by that group (its children are real actors, reachable
        from anywhere); a hosted group itself has no address outside this process, so for
        "<group>" only its state is given."""
        group_id, sep, rest = msg.child_id.partition("/")
        child = self.children.get(group_id)
        running = child is not None and child.state == "running"
        if sep and running:
            self._local.append((child.addr, dataclasses.replace(msg, child_id=rest), sender))
            return
        self.send(sender, ChildAddress(msg.request_id, msg.child_id, None,
                                       child.state if child else "unknown"))


class HostingSupervisor(GroupHost, Supervisor):
    """A Supervisor whose children (supervisors themselves) all run hosted in its process."""


class LeafHost(GroupHost):
    """Mixin for a supervisor whose children are leaf actors (a bot's backend and the bot) run
    hosted in its own process: one process per bot instead of one per actor
    (`system.process_unit = "bot"`). Put it first: `class PairedBotGroup(LeafHost, BotGroup)`.

    Unlike hosted bot groups, these children talk to the whole system (the rate limiter, the
    store, the metrics exporter, control) and are talked to: their addresses carry this
    process's address (messages/routing.py), what they send to real actors leaves as `Routed`
    with them as its source, and they keep the descriptors they watch (a backend's bridge):
    this process watches the union and hands each child the ones that are ready. They never
    create actors, so this process, which runs their threads, never forks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._child_fds: dict[HostedAddress, list] = {}
        self._host_ending = False     # this process ends: its children are stopped, no check

    def reachable_host(self):
        return self.myAddress

    def send_from_hosted(self, source: HostedAddress, target, msg):
        if type(msg) is Routed and target == self.myAddress:
            # FleetActor.send wrapped a sibling's address: it lives here, or lived here.
            if msg.target not in self.hosted:
                return   # an incarnation that has exited (thespian drops those too)
            target, msg = msg.target, msg.msg
        if target == self.myAddress or (isinstance(target, HostedAddress) and target in self.hosted):
            self._local.append((target, msg, source))
            return
        if type(msg) is Routed:    # to an actor hosted in another process
            msg = Routed(msg.target, msg.msg, source)
        else:
            msg = Routed(None, msg, source)
        super(GroupHost, self).send(target, msg)

    def receiveMessage(self, msg, sender):  # noqa: N802 - thespian's name
        if self._stopped and not isinstance(msg, ActorExitRequest):
            return None   # stopped, children included: thespian ends this process next
        if isinstance(msg, WatchMessage):
            ready = set(getattr(msg, "ready", ()) or ())
            for addr, fds in list(self._child_fds.items()):
                mine = [fd for fd in fds if fd in ready]
                if mine:
                    self._deliver(addr, WatchMessage(mine), sender)
            self._drain()
            return self.host_watch(None)
        return super().receiveMessage(msg, sender)

    def _deliver(self, addr: HostedAddress, msg, sender):
        inst = self.hosted.get(addr)
        if inst is None:
            return
        watch = inst.receiveMessage(msg, sender)
        if addr in self.hosted:
            self._child_fds[addr] = list(watch.filenos) if isinstance(watch, ThespianWatch) else []
        if isinstance(msg, ActorExitRequest):
            self._end_hosted(addr, inst)

    def _end_hosted(self, addr: HostedAddress, inst):
        self._child_fds.pop(addr, None)
        left = "" if self._host_ending else inst.left_behind()
        if left:
            # e.g. a library thread that would not stop: still connected, so a successor here
            # would share its session. Its own process would have ended: this one does. The
            # host crashes (reported to its parent, which starts the group again in a new
            # process); its other children are stopped cleanly first (on_stop below).
            del self.hosted[addr]
            self._crash(RuntimeError(f"{addr.path} left {left} running after it stopped; "
                                     f"this process ends with it"))
            return
        super()._end_hosted(addr, inst)

    def on_stop(self):
        """The host itself ends (stopped, killed by its parent, crashed): whatever is still
        hosted stops first, last started first, as thespian's exit would have done to actors
        of their own. Nothing is restarted: the process ends."""
        self._host_ending = True
        for addr in reversed(list(self.hosted)):
            self._deliver(addr, ActorExitRequest(), self.myAddress)
        self._local.clear()   # their exit notices: nobody is left to act on them
        super().on_stop()

    def host_watch(self, own):
        fds = [fd for fds in self._child_fds.values() for fd in fds]
        if isinstance(own, ThespianWatch):
            fds.extend(own.filenos)
        return ThespianWatch(fds) if fds else own

    def on_Started(self, msg: Started, sender):
        # A hosted child runs in this process: its pid is this one (shown by `ctl status`; a
        # supervisor never signals its own pid).
        super(GroupHost, self).on_Started(msg, sender)

    def on_WhereIs(self, msg: WhereIs, sender):
        super(GroupHost, self).on_WhereIs(msg, sender)   # children are reachable: their address


class PairedBotGroup(LeafHost, BotGroup):
    """A bot group that is a process of its own, with its backend and bot hosted in it
    (`system.process_unit = "bot"`): one process per bot. Every bot is still isolated from the
    others; the bot and its backend share a fate, as rest_for_one already makes them do."""
