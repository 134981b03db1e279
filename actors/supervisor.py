"""OTP-style supervision for thespian actors.

thespian restarts nothing by itself: a parent only receives `ChildActorExited`. `Supervisor`
turns that into Erlang/OTP's rules:
- children are specs (`ChildSpec`: id, class, args, restart type, shutdown timeout), started in
  order (each one `Started` before the next) and stopped in reverse order;
- strategies: one_for_one (restart the failed child), one_for_all (restart every child),
  rest_for_one (restart the failed child and the ones started after it);
- restart intensity: more than `intensity` restarts within `period` seconds means the subtree
  cannot heal itself: the supervisor stops its children and fails upward (escalation);
- exponential backoff with jitter before each restart, reset after a stable period;
- health: a periodic `Probe`; a child that misses `probe_misses` probes in a row is hung (alive
  but useless) and is killed, then restarted;
- a killed child's old process must be gone before its replacement starts (it owned a session);
- thespian delivers `ChildActorExited` twice for a constructor that raised: an exit is handled
  only for the address the child currently has.
All waiting is done with timers and messages: `receiveMessage` never blocks.
"""
from __future__ import annotations

import collections
import os
import signal
import time
from dataclasses import dataclass, field

from thespian.actors import ActorExitRequest, ChildActorExited

from actors.base import FleetActor
from messages.lifecycle import (TEMPORARY, TRANSIENT, AddChild, ChildCommand,
                                ChildAddress, ChildCommandResult, ChildInfo, ChildSpec, Crashed,
                                EnvUpdate, Finished,
                                LifecycleEvent, Probe, ProbeReply, Start, Started, StatusRow,
                                Stop, TreeStatus, TreeStatusRequest, WhereIs)
from system.backoff import Backoff
from system import placement
from system.procguard import pid_alive

ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE = "one_for_one", "one_for_all", "rest_for_one"
STRATEGIES = (ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE)


@dataclass
class Child:
    spec: ChildSpec
    addr: object = None
    state: str = "stopped"   # stopped|starting|running|stopping|exited|failed
    pid: int = 0
    last_pid: int = 0
    system: str = ""         # the child's actor system (Started.system); "" before it starts
    last_system: str = ""
    host: str = ""
    failed_now: bool = False  # this incarnation reported a crash or missed its start deadline
    restarts: int = 0
    restart_times: collections.deque = field(default_factory=collections.deque)
    started_at: float = 0.0
    last_error: str = ""
    info: str = ""
    manual_stop: bool = False
    finished: bool = False
    probes_out: int = 0
    gen: int = 0
    backoff: Backoff = field(default_factory=Backoff)


def spec_from(obj) -> ChildSpec:
    return obj if isinstance(obj, ChildSpec) else ChildSpec(**obj)


class Supervisor(FleetActor):
    """A generic supervisor; its children and rules come in `Start.args`:
    strategy, intensity, period, children (list of ChildSpec), probe_interval, probe_misses,
    start_timeout, backoff (dict of Backoff fields)."""

    kind = "supervisor"
    start_async = True
    # child id -> (pid, system) of processes a previous incarnation of this supervisor left
    # behind, killed but perhaps not yet gone: a hosted group (actors/hosted.py) waits for
    # them before starting a second session beside them, as it does after a restart.
    inherited_pids: dict = {}

    def on_start(self, args):
        self.strategy = args.get("strategy", ONE_FOR_ONE)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        self.intensity = int(args.get("intensity", 3))
        self.period = float(args.get("period", 5.0))
        self.probe_interval = float(args.get("probe_interval", 1.0))
        self.probe_misses = int(args.get("probe_misses", 3))
        self.start_timeout = float(args.get("start_timeout", 15.0))
        self.backoff_args = dict(args.get("backoff", {}))
        # 'supervisor': OTP's rule, too many restarts fail this supervisor upward.
        # 'child': a child past the intensity is given up on (state 'failed', an escalation
        # event) while its siblings keep running: one broken bot must not stop the fleet.
        self.intensity_scope = args.get("intensity_scope", "supervisor")
        self.children: dict[str, Child] = {}
        self.order: list[str] = []
        self.restart_times: collections.deque = collections.deque()
        self.ops: collections.deque = collections.deque()
        self.waiting = False           # the head op waits for a message or a timer
        self.escalating = False
        self.escalations = 0
        self.probe_seq = 0
        self.status_gathers: dict[str, dict] = {}
        # parent_system, probe_*: a child placed in another system watches these probes
        # (actors/base.py, system/placement.py)
        self.child_env = dict(self.env, parent_pid=os.getpid(),
                              parent_system=placement.system_id(),
                              probe_interval=self.probe_interval,
                              probe_misses=self.probe_misses,
                              start_timeout=self.start_timeout)
        self.setup_children(args)
        for cid, (pid, system) in self.inherited_pids.items():
            child = self.children.get(cid)
            if child is not None:
                child.last_pid, child.last_system = pid, system
        for cid in self.order:
            self.ops.append(("start", cid))
        self.ops.append(("started",))
        self.advance()

    def setup_children(self, args):
        """Subclasses may add children computed at start (the root adds its services)."""
        for obj in args.get("children", []):
            self.add_spec(spec_from(obj))

    def add_spec(self, spec: ChildSpec) -> Child:
        if spec.id in self.children:
            raise ValueError(f"duplicate child id {spec.id!r}")
        child = Child(spec=spec, backoff=Backoff(**self.backoff_args))
        self.children[spec.id] = child
        self.order.append(spec.id)
        return child

    # ---- the operation queue ------------------------------------------------------------
    def advance(self):
        """Run queued operations in order until one has to wait for a message or a timer."""
        while self.ops and not self.waiting:
            op = self.ops[0]
            name = op[0]
            if name == "start":
                child = self.children.get(op[1])
                if child is None or child.state in ("running", "starting"):
                    self.ops.popleft()
                    continue
                if placement.same_machine(child.last_system) and pid_alive(child.last_pid):
                    # The old process still holds the session: wait until it is gone.
                    self.waiting = True
                    self.after("resume", 0.02)
                    return
                self.start_child(child)
                if len(op) > 2 and op[2] == "nowait":
                    # Independent children (bots at boot) start side by side: the next one
                    # does not wait for this one's Started; each has its own start deadline.
                    self.ops.popleft()
                    continue
                self.waiting = True
                return
            if name == "stop":
                child = self.children.get(op[1])
                if child is not None and child.state == "exited":
                    # Waiting for its restart timer: the stop wins (a new gen voids the timer).
                    child.state = "stopped"
                    child.gen += 1
                if child is None or child.state not in ("running", "starting"):
                    self.ops.popleft()
                    continue
                self.stop_child(child)
                self.waiting = True
                return
            if name == "delay":
                self.ops.popleft()
                if op[1] > 0:
                    self.waiting = True
                    self.after("resume", op[1])
                    return
                continue
            self.ops.popleft()
            if name == "started":
                self.report_started()
                self.every("probe", self.probe_interval)
                self.emit("start", self.path)
            elif name == "reply":
                self.send(op[1], op[2])
            elif name == "remove":
                child = self.children.pop(op[1], None)
                if child is not None:
                    self.order.remove(op[1])
            elif name == "escalated":
                self.finish_escalation(op[1])
            elif name == "exit":
                self.before_exit()
                self._run_stop()
                self.send(self.myAddress, self.exit_request())

    def op_done(self, kind: str, child_id: str, advance: bool = True):
        """The head op for `child_id` completed (Started / exit seen)."""
        if self.ops and self.ops[0][0] == kind and self.ops[0][1] == child_id:
            self.ops.popleft()
            self.waiting = False
            self.cancel_timer("resume")
            if advance:
                self.advance()

    def queue_first(self, new_ops: list):
        """Recovery goes before queued work (e.g. before reporting Started), but never in
        front of an operation that is already waiting for its answer."""
        head = self.ops.popleft() if (self.waiting and self.ops) else None
        for op in reversed(new_ops):
            self.ops.appendleft(op)
        if head is not None:
            self.ops.appendleft(head)

    def on_timer(self, name):
        if name == "resume":
            self.waiting = False
            self.advance()
        elif name == "probe":
            self.probe_children()
        elif name.startswith("deadline:"):
            _, cid, gen = name.split(":")
            child = self.children.get(cid)
            if child and str(child.gen) == gen and child.state in ("starting", "stopping"):
                what = "start" if child.state == "starting" else "stop"
                self.log.warning("%s: %s/%s did not %s in time: killing it", self.path,
                                 self.path, cid, what)
                child.last_error = f"{what} timeout"
                child.failed_now = True
                self.kill_child(child)
        elif name.startswith("restart:"):
            _, cid, gen = name.split(":")
            child = self.children.get(cid)
            if child and str(child.gen) == gen and child.state == "exited" and \
                    not self.escalating:
                self.queue_first([("start", cid, "nowait")])
                self.advance()
        elif name.startswith("gone:"):
            _, cid, gen = name.split(":")
            child = self.children.get(cid)
            if child and str(child.gen) == gen and child.addr is not None:
                self.log.warning("%s/%s (in system %s) did not confirm its exit: counting it "
                                 "as gone", self.path, cid, child.system)
                child.last_error = child.last_error or "unreachable"
                self.on_child_exited(ChildActorExited(child.addr), self.myAddress)
        elif name.startswith("reaped:"):
            _, cid, gen = name.split(":")
            child = self.children.get(cid)
            if child and str(child.gen) == gen and child.addr is not None:
                if self.exit_unnoticed(child):
                    self.count_exit_unnoticed(child)
                else:
                    self.after(name, 1.0)   # still dying (or a zombie not reaped yet)
        elif name == "gather":
            now = time.time()
            for rid in [r for r, g in self.status_gathers.items() if g["deadline"] <= now]:
                self.finish_gather(rid)

    # ---- starting and stopping one child -------------------------------------------------
    def start_child(self, child: Child):
        child.gen += 1
        child.state = "starting"
        child.probes_out = 0
        child.finished = False
        child.manual_stop = False
        # Not known until its Started: a kill before then must not hit the previous
        # incarnation's pid (it is gone, and the number may belong to another process now).
        child.pid = 0
        child.system = ""
        child.failed_now = False
        child.addr = self.create_child_actor(child)
        env = dict(self.child_env)
        self.send(child.addr, Start(child.spec.id, dict(child.spec.args), env,
                                    f"{self.path}/{child.spec.id}"))
        self.after(f"deadline:{child.spec.id}:{child.gen}", self.start_timeout)

    def create_child_actor(self, child: Child):
        """A new actor for CHILD (its address): thespian's createActor, on the system its
        requirements ask for; the bots supervisor hosts its groups instead (actors/hosted.py)."""
        if child.spec.requirements:
            return self.createActor(child.spec.actor_class,
                                    targetActorRequirements=child.spec.requirements)
        return self.createActor(child.spec.actor_class)

    def on_Started(self, msg: Started, sender):
        child = self.children.get(msg.child_id)
        if child is None or child.addr != sender or child.state != "starting":
            return
        child.state = "running"
        child.pid = msg.pid
        child.last_pid = msg.pid
        child.system = child.last_system = msg.system
        child.host = msg.host
        child.info = ""
        child.started_at = time.time()
        child.backoff.started(time.monotonic())
        self.cancel_timer(f"deadline:{child.spec.id}:{child.gen}")
        # Later siblings find earlier ones here (the bot finds its backend); siblings already
        # running learn the new address of a restarted one.
        key = f"sibling.{child.spec.id}"
        moved = key in self.child_env and self.child_env[key] != sender
        self.child_env[key] = sender
        if moved:
            update = EnvUpdate(key, sender)
            for other in self.children.values():
                if other is not child and other.addr is not None and \
                        other.state in ("running", "starting"):
                    self.send(other.addr, update)
        self.emit("started", f"{self.path}/{child.spec.id}")
        self.op_done("start", child.spec.id)

    def stop_child(self, child: Child):
        timeout = child.spec.shutdown_timeout
        if self.remote(child) and (child.state == "starting" or child.probes_out >= 2):
            # A placement that may never complete (its member host is gone, and thespian's
            # convention still lists it), or a placed child that stopped answering probes: do
            # not hold the whole stop for it.
            timeout = min(timeout, 2 * self.probe_interval + 1.0)
        child.gen += 1
        child.state = "stopping"
        self.send(child.addr, Stop("supervisor"))
        self.after(f"deadline:{child.spec.id}:{child.gen}", timeout)

    def kill_child(self, child: Child):
        """Force a child out: SIGKILL its process (multiproc base) or exit it in-process. A
        child on another machine cannot be signalled (its pid is not ours): it is asked to
        exit, and its watch of our probes ends it if it cannot hear us (actors/base.py)."""
        if child.pid and child.pid != os.getpid() and placement.same_machine(child.system):
            try:
                os.kill(child.pid, signal.SIGKILL)
                if not self.remote(child):
                    # ChildActorExited follows once the process is reaped; if thespian loses
                    # it (see exit_unnoticed), this counts the child out instead.
                    self.after_unless_armed(f"reaped:{child.spec.id}:{child.gen}", 1.0)
                    return
            except ProcessLookupError:
                if not self.remote(child):
                    self.count_exit_unnoticed(child)
                    return
        if child.addr is not None:
            self.send(child.addr, ActorExitRequest())
        if self.remote(child):
            # Nobody here reaps a process of another system: if its system went away with
            # it, no ChildActorExited ever comes. Give it a few probe intervals, then count it
            # as gone (a late exit notice finds no child and is ignored). A child that is only
            # cut off from us stops itself after probe_misses + 2 silent intervals
            # (actors/base.py); this supervisor killed it after probe_misses, so 3 more
            # intervals means its own stop has begun before a successor is placed.
            # While stopping there is no successor to wait for. `unless_armed`: a hung child
            # is killed again at every probe round, which must not push this further away.
            delay = 1.0 if self.escalating else 3 * self.probe_interval + 1.0
            self.after_unless_armed(f"gone:{child.spec.id}:{child.gen}", delay)

    @staticmethod
    def exit_unnoticed(child: Child) -> bool:
        """True when a child's process on this machine is gone while no exit notice came.
        thespian can lose a ChildActorExited: after each exit it reports, it re-checks which
        children are alive and silently drops one that died meanwhile, so of two children
        killed at once (a bot group's backend and bot) only one may be reported."""
        return bool(child.pid) and child.pid != os.getpid() and child.addr is not None and \
            placement.same_machine(child.system) and not pid_alive(child.pid)

    def count_exit_unnoticed(self, child: Child):
        self.log.warning("%s/%s: its process %d is gone, and thespian sent no exit notice: "
                         "counting it as exited", self.path, child.spec.id, child.pid)
        self.on_child_exited(ChildActorExited(child.addr), self.myAddress)

    @staticmethod
    def remote(child: Child) -> bool:
        """True when the child is placed on another actor system (a member host), or on its
        way there (placed, and not yet started in this system)."""
        return bool(child.spec.requirements) and child.system != placement.system_id()

    def on_Crashed(self, msg: Crashed, sender):
        child = self.children.get(msg.child_id)
        if child is not None and child.addr == sender:
            child.failed_now = True
            child.last_error = ("escalation: " if msg.escalation else "") + msg.error

    def on_ChildInfo(self, msg: ChildInfo, sender):
        child = self.children.get(msg.child_id)
        if child is not None and child.addr == sender:
            child.info = str(msg.info)[:200]

    def on_Finished(self, msg: Finished, sender):
        child = self.children.get(msg.child_id)
        if child is not None and child.addr == sender:
            child.finished = True

    def on_child_exited(self, msg, sender):
        child = next((c for c in self.children.values()
                      if c.addr is not None and c.addr == msg.childAddress), None)
        if child is None:
            return  # the second ChildActorExited of a failed constructor, or a removed child
        child.addr = None
        cid = child.spec.id
        self.cancel_timer(f"deadline:{cid}:{child.gen}")
        self.gather_without(cid)
        if child.state == "stopping":
            child.state = "stopped"
            self.emit("stop", f"{self.path}/{cid}", child.last_error or "requested")
            self.op_done("stop", cid)
            return
        was_starting = child.state == "starting"
        child.state = "exited"
        # Gone before it ran, without a crash of its own: thespian found no system that can
        # take it (no member with that host in the convention).
        unplaced = was_starting and bool(child.spec.requirements) and not child.failed_now
        if unplaced:
            child.last_error = (f"not placed: no system in the convention has "
                                f"{child.spec.requirements} (is that member host running?)")
        elif not child.last_error:
            child.last_error = "exited during start" if was_starting else "process exited"
        if was_starting:
            self.op_done("start", cid, advance=False)
        self.child_failed(child, unplaced)
        self.advance()

    # ---- failure handling ----------------------------------------------------------------
    def child_failed(self, child: Child, unplaced: bool = False):
        cid = child.spec.id
        path = f"{self.path}/{cid}"
        if self.escalating:
            child.state = "stopped"
            return
        normal = child.finished
        self.emit("exit" if normal else "crash", path, child.last_error)
        if child.spec.restart == TEMPORARY or (child.spec.restart == TRANSIENT and normal):
            child.state = "stopped" if normal else "failed"
            return
        now = time.monotonic()
        times = child.restart_times if self.intensity_scope == "child" else self.restart_times
        if not unplaced:
            # (No system could take it, i.e. its member host is not in the convention: not
            # joined yet, stopped, or gone. Not a crash of the bot: it is tried again at the
            # backoff's pace, without using up its restart intensity, until the member is back.)
            times.append(now)
        while times and now - times[0] > self.period:
            times.popleft()
        if len(times) > self.intensity:
            reason = (f"{cid} failed {len(times)} times within {self.period:g}s "
                      f"(intensity {self.intensity}): {child.last_error}")
            if self.intensity_scope == "child":
                child.state = "failed"
                child.last_error = "escalation: " + reason
                self.emit("escalation", path, reason)
                self.log.error("%s: giving up on %s: %s", self.path, cid, reason)
                return
            self.escalate(reason)
            return
        delay = child.backoff.next_delay(now)
        child.restarts += 1
        self.emit("restart", path, f"after {delay:.3f}s: {child.last_error}")
        if self.strategy == ONE_FOR_ONE and self.intensity_scope == "child":
            # Independent children (the bots): a restart neither waits for nor holds up the
            # others. Through the operation queue, one bot's backoff (up to backoff_max_s) and
            # its start (up to the start timeout, e.g. a placement on a member host that is
            # gone) would delay every other bot's restart and every ctl command behind it.
            self.after(f"restart:{cid}:{child.gen}", delay)
            return
        idx = self.order.index(cid)
        if self.strategy == ONE_FOR_ONE:
            group = [cid]
        elif self.strategy == ONE_FOR_ALL:
            group = list(self.order)
        else:
            group = self.order[idx:]
        new_ops = [("stop", other) for other in reversed(group) if other != cid]
        new_ops.append(("delay", delay))
        for other in group:
            if other != cid:
                self.children[other].restarts += 1   # restarted along with the failed one
            new_ops.append(("start", other))
        self.queue_first(new_ops)

    def escalate(self, reason: str):
        """Intensity exceeded: stop every child in reverse order, then fail upward."""
        self.escalating = True
        self.escalations += 1
        self.emit("escalation", self.path, reason)
        self.log.error("%s: escalating: %s", self.path, reason)
        self.cancel_timer("probe")
        self.ops.clear()
        self.waiting = False
        for cid in reversed(self.order):
            self.ops.append(("stop", cid))
        self.ops.append(("escalated", reason))
        self.advance()

    def before_exit(self):
        """Runs after every child stopped on a clean stop, just before this supervisor exits."""

    def finish_escalation(self, reason: str):
        if self.parent is not None:
            self.send(self.parent, Crashed(self.child_id, reason[:500], escalation=True))
        self._run_stop()
        self.send(self.myAddress, self.exit_request())

    def exit_request(self) -> ActorExitRequest:
        """What this supervisor sends itself to exit once its children are stopped."""
        return ActorExitRequest()

    # ---- health probes -------------------------------------------------------------------
    def probe_children(self):
        self.probe_seq += 1
        for child in list(self.children.values()):
            if child.state in ("running", "stopping") and self.exit_unnoticed(child):
                self.count_exit_unnoticed(child)
                continue
            if child.state != "running":
                continue
            if child.probes_out >= self.probe_misses:
                child.last_error = f"hung: missed {child.probes_out} probes"
                self.log.warning("%s/%s is hung (%d probes unanswered): killing it",
                                 self.path, child.spec.id, child.probes_out)
                child.probes_out = 0
                self.kill_child(child)
                continue
            child.probes_out += 1
            self.send(child.addr, Probe(self.probe_seq))

    def on_ProbeReply(self, msg: ProbeReply, sender):
        child = self.children.get(msg.child_id)
        if child is not None and child.addr == sender:
            child.probes_out = 0 if msg.healthy else child.probes_out

    # ---- clean stop of the whole subtree -------------------------------------------------
    def on_stop_request(self, msg: Stop, sender):
        self.cancel_timer("probe")
        self.escalating = True   # no restarts while stopping
        self.ops.clear()
        self.waiting = False
        for cid in reversed(self.order):
            self.ops.append(("stop", cid))
        self.ops.append(("exit",))
        self.advance()

    # ---- management commands -------------------------------------------------------------
    def on_AddChild(self, msg: AddChild, sender):
        try:
            self.add_spec(msg.spec)
        except ValueError as exc:
            self.send(sender, ChildCommandResult(msg.request_id, False, str(exc)))
            return
        if msg.start:
            self.ops.append(("start", msg.spec.id))
        self.ops.append(("reply", sender, ChildCommandResult(msg.request_id, True)))
        self.advance()

    def on_ChildCommand(self, msg: ChildCommand, sender):
        child = self.children.get(msg.child_id)
        if child is None:
            self.send(sender, ChildCommandResult(msg.request_id, False,
                                                 f"no such child: {msg.child_id!r}"))
            return
        if msg.op == "start":
            self.ops.append(("start", msg.child_id))
        elif msg.op == "stop":
            self.ops.append(("stop", msg.child_id))
        elif msg.op == "restart":
            child.restarts += 1
            self.emit("restart", f"{self.path}/{msg.child_id}", "requested")
            self.ops.append(("stop", msg.child_id))
            self.ops.append(("start", msg.child_id))
        elif msg.op == "remove":
            self.ops.append(("stop", msg.child_id))
            self.ops.append(("remove", msg.child_id))
        else:
            self.send(sender, ChildCommandResult(msg.request_id, False,
                                                 f"unknown child op {msg.op!r}"))
            return
        self.ops.append(("reply", sender, ChildCommandResult(msg.request_id, True)))
        self.advance()

    def on_WhereIs(self, msg: WhereIs, sender):
        child = self.children.get(msg.child_id)
        running = child is not None and child.state == "running"
        self.send(sender, ChildAddress(msg.request_id, msg.child_id,
                                       child.addr if running else None,
                                       child.state if child else "unknown"))

    # ---- status --------------------------------------------------------------------------
    def own_rows(self) -> list[StatusRow]:
        now = time.time()
        rows = []
        for cid in self.order:
            c = self.children[cid]
            rows.append(StatusRow(f"{self.path}/{cid}", c.spec.kind, c.state, c.restarts,
                                  round(now - c.started_at, 1) if c.state == "running" else 0.0,
                                  c.last_error, c.pid if c.state == "running" else 0,
                                  c.info if c.state == "running" else "",
                                  c.host if c.state == "running" else ""))
        return rows

    def on_TreeStatusRequest(self, msg: TreeStatusRequest, sender):
        subs = [c for c in self.children.values()
                if c.spec.kind == "supervisor" and c.state == "running"]
        rid = f"{msg.request_id}/{self.path}/{time.monotonic_ns()}"
        self.status_gathers[rid] = {"reply_to": sender, "request_id": msg.request_id,
                                    "rows": self.own_rows(), "waiting": {c.spec.id for c in subs},
                                    "deadline": time.time() + self.gather_s()}
        if not subs:
            self.finish_gather(rid)
            return
        for c in subs:
            self.send(c.addr, TreeStatusRequest(f"{rid}|{c.spec.id}"))
        self.after("gather", self.gather_s())

    def gather_s(self) -> float:
        """How long to wait for sub-supervisors' rows: less the deeper this one is, so a
        subtree that cannot answer (hung, or on a member host that vanished) is cut off
        below and its parent still answers with its own rows in time."""
        return max(0.5, 2.0 - 0.4 * self.path.count("/"))

    def on_TreeStatus(self, msg: TreeStatus, sender):
        rid, _, cid = msg.request_id.rpartition("|")
        gather = self.status_gathers.get(rid)
        if gather is None:
            return
        gather["rows"].extend(msg.rows)
        gather["waiting"].discard(cid)
        if not gather["waiting"]:
            self.finish_gather(rid)

    def gather_without(self, cid: str):
        """Child CID is gone: status requests waiting for its rows answer without them now,
        not at their deadline: a bot group whose process was just killed must not hold
        `ctl status` (and whoever waits on it) for the whole gather time (1.6 s)."""
        for rid, gather in list(self.status_gathers.items()):
            if cid in gather["waiting"]:
                gather["waiting"].discard(cid)
                if not gather["waiting"]:
                    self.finish_gather(rid)

    def finish_gather(self, rid: str):
        gather = self.status_gathers.pop(rid, None)
        if gather is not None:
            self.send(gather["reply_to"], TreeStatus(gather["request_id"], tuple(gather["rows"])))

    # ---- events: audit log and metrics ---------------------------------------------------
    def emit(self, event: str, path: str, reason: str = ""):
        ev = LifecycleEvent(time.time(), path, event, reason[:500])
        for key in ("store", "metrics", "root"):
            addr = self.child_env.get(key)
            if addr is not None and addr != self.myAddress:
                self.send(addr, ev)
        self.on_lifecycle_event(ev)

    def on_env_update(self, msg):
        self.child_env[msg.key] = msg.address
        for child in self.children.values():
            if child.addr is not None and child.state in ("running", "starting"):
                self.send(child.addr, msg)

    def on_lifecycle_event(self, ev: LifecycleEvent):
        """Hook for the root supervisor (metrics of its own)."""


class BotGroup(Supervisor):
    """The per-bot supervisor: its backend first, then the bot (rest_for_one): when the backend
    restarts the bot restarts after it, because the bot's view of the session went with it."""

    def on_start(self, args):
        args = dict(args)
        args.setdefault("strategy", REST_FOR_ONE)
        super().on_start(args)

    def _detach_bot(self, address):
        """Tell the backend its bot is gone, so updates wait for the next bot instead of being
        sent to a dead address (thespian drops those silently)."""
        from messages.backend import DetachBot
        bot, backend = self.children.get("bot"), self.children.get("backend")
        if bot is not None and address is not None and bot.addr == address and \
                backend is not None and backend.addr is not None and backend.addr != address:
            self.send(backend.addr, DetachBot(address))

    def on_Crashed(self, msg, sender):
        if msg.child_id == "bot":
            self._detach_bot(sender)
        super().on_Crashed(msg, sender)

    def on_child_exited(self, msg, sender):
        self._detach_bot(msg.childAddress)
        super().on_child_exited(msg, sender)
