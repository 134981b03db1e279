"""FleetActor: the base every tgfleet actor derives from.

It gives each actor the same shape (as Pykka's lifecycle hooks do):
- `on_start(args)`  runs in the actor's context when its supervisor sends `Start`; raise to fail.
- `on_stop()`       runs once, on `Stop`, on `ActorExitRequest` or after a crash; closes threads.
- `on_bridge(item)` runs for every item a background thread posted to `self.bridge`.
- `on_timer(name)`  runs when a timer set with `self.every()` / `self.after()` fires.
- `on_<MessageClass>(msg, sender)` handles any other message by its type name.
An exception in any of them is "let it crash": logged, reported to the parent as `Crashed`, and
the actor exits so its supervisor restarts it. `receiveMessage` itself never blocks.
"""
from __future__ import annotations

import heapq
import logging
import os
import re
import time
import traceback

from thespian.actors import (Actor, ActorExitRequest, ChildActorExited, PoisonMessage,
                             ThespianWatch, WakeupMessage, WatchMessage)

from messages.lifecycle import (BridgeWake, ChildInfo, Crashed, EnvUpdate, Probe, ProbeReply, Start, Started,
                                Stop)
from messages.routing import HostedAddress, Routed
from system import inline, placement
from system.bridge import Bridge
from system.procguard import guard_actor_process

PARENT_WATCH = "_parent_watch"


class FleetActor(Actor):
    kind = "worker"
    # Set True when the actor answers `Started` itself later (after async setup).
    start_async = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.child_id = ""
        self.path = ""
        self.args: dict = {}
        self.env: dict = {}
        self.parent = None
        self.bridge: Bridge | None = None
        self._watched: dict = {}               # fd -> callback(), e.g. a lane (system/lane.py)
        self._last_info = None                 # what report_info() last told the supervisor
        self._last_info_at = 0.0
        self.started_at = 0.0
        self._stopped = False
        # name -> [due (monotonic), period (0 = one-shot)]; see `_arm` for why one wake-up.
        self._timers: dict[str, list] = {}
        self._wakeups_due: list[float] = []   # heap: due times of thespian wake-ups in flight
        self.log = logging.getLogger(f"tgfleet.{type(self).__name__}")
        self._last_probe = 0.0
        self._parent_timeout = 0.0             # > 0: the parent lives in another system
        self._start_grace = 0.0                # the silence allowed before Started
        self._probed_from = False              # Started reported: probes are due from now

    @staticmethod
    def actorSystemCapabilityCheck(capabilities, requirements):  # noqa: N802 - thespian's name
        """Where thespian may create this actor (system/placement.py)."""
        return placement.fits(capabilities, requirements)

    # ---- thespian entry point ---------------------------------------------------------
    # receiveMessage catches what a handler raises (`_crash`): an inline run may call it
    # without thespian's retry wrapper (system/inline.py).
    receive_never_raises = True

    def receiveMessage(self, msg, sender):
        if type(msg) is Routed:   # from an actor hosted in another process (messages/routing.py)
            msg, sender = self._unwrap(msg, sender)
        if msg is not None:
            try:
                self._dispatch(msg, sender)
            except Exception as exc:  # let it crash: report, clean up, exit
                self._crash(exc)
        bridge = self.bridge
        if self._watched:
            fds = list(self._watched)
            if bridge is not None and not bridge.closed:
                fds.append(bridge.fd)
            return ThespianWatch(fds)
        return bridge.watch() if bridge is not None and not bridge.closed else None

    def _unwrap(self, routed: Routed, sender):
        """(message, sender) as the source of ROUTED sent it; (None, sender) when it is for an
        actor hosted where this one's address once was (a host that ended and left its port)."""
        if routed.target is not None:
            self.log.debug("%s: dropped a message for %s", self.path, routed.target)
            return None, sender
        return routed.msg, (routed.source if routed.source is not None else sender)

    def send(self, targetAddr, msg):  # noqa: N803 - thespian's signature
        """thespian's send, plus addresses of actors hosted in another actor's process: those
        are reached through their host (messages/routing.py)."""
        if type(targetAddr) is HostedAddress and targetAddr.host is not None:
            msg = Routed(targetAddr, msg)
            targetAddr = targetAddr.host
        super().send(targetAddr, msg)

    def _dispatch(self, msg, sender):
        if isinstance(msg, (WatchMessage, BridgeWake)):
            if self._watched and isinstance(msg, WatchMessage):
                for fd in list(getattr(msg, "ready", ()) or ()):
                    callback = self._watched.get(fd)
                    if callback is not None and not self._stopped:
                        callback()
            if self.bridge is not None:
                read = msg.readable if type(msg) is BridgeWake else True
                for item in self.bridge.drain(read):
                    if self._stopped:
                        break   # results that arrive after on_stop have no one to go to
                    self.on_bridge(item)
        elif isinstance(msg, Start):
            self._handle_start(msg, sender)
        elif isinstance(msg, Stop):
            self.cancel_timer(PARENT_WATCH)   # stopping already: probes end, as they should
            self.on_stop_request(msg, sender)
        elif isinstance(msg, ActorExitRequest):
            self._run_stop()
        elif isinstance(msg, Probe):
            self._last_probe = time.monotonic()
            self.on_probe(msg, sender)
        elif isinstance(msg, EnvUpdate):
            self.env = dict(self.env, **{msg.key: msg.address})
            self.on_env_update(msg)
        elif isinstance(msg, WakeupMessage):
            self._handle_wakeup(msg)
        elif isinstance(msg, ChildActorExited):
            self.on_child_exited(msg, sender)
        elif isinstance(msg, PoisonMessage):
            self.log.warning("%s: a message we sent could not be handled: %r",
                             self.path or type(self).__name__, msg.poisonMessage)
        else:
            handler = getattr(self, "on_" + type(msg).__name__, None)
            if handler is None:
                self.on_unknown(msg, sender)
            else:
                handler(msg, sender)

    # ---- lifecycle ----------------------------------------------------------------------
    def _handle_start(self, msg: Start, sender):
        if self.child_id:
            self.log.warning("%s: duplicate Start ignored", self.path)
            return
        parent_system = msg.env.get("parent_system", "")
        remote_parent = bool(parent_system) and parent_system != placement.system_id()
        # A parent in another system (a bot group placed on a member host) is not this
        # process's parent: only check the parent pid when it is.
        guard_actor_process(None if remote_parent else msg.env.get("parent_pid"))
        self.child_id, self.args, self.env, self.path = msg.child_id, msg.args, msg.env, msg.path
        self.parent = sender
        self.started_at = time.time()
        self.log = logging.getLogger(f"tgfleet.{self.kind}.{msg.child_id}")
        if remote_parent:
            self._watch_parent(float(msg.env.get("probe_interval") or 5.0),
                               int(msg.env.get("probe_misses") or 3),
                               float(msg.env.get("start_timeout") or 15.0))
        self.on_start(msg.args)
        if not self.start_async:
            self.report_started()

    # A status line whose numbers alone changed (queue=12 -> queue=15) is sent at most this
    # often; a change in words (circuit=closed -> circuit=open) goes at once. Why: under load
    # the numbers change on every report, and each ChildInfo costs the supervisor's process a
    # thespian receive (fifty bots made their supervisors busier than the bots themselves).
    INFO_NUMBERS_S = 10.0
    _DIGITS = re.compile(r"\d+")

    def report_info(self, info: str):
        """Tell the supervisor this actor's one-line status for `ctl status` (only changes)."""
        last = self._last_info
        if info == last or self.parent is None:
            return
        now = time.monotonic()
        if last is not None and now - self._last_info_at < self.INFO_NUMBERS_S and \
                self._DIGITS.sub("#", info) == self._DIGITS.sub("#", last):
            return   # numbers only: the next report after INFO_NUMBERS_S carries them
        self._last_info, self._last_info_at = info, now
        self.send(self.parent, ChildInfo(self.child_id, info[:200]))

    def report_started(self):
        self.send(self.parent, Started(self.child_id, os.getpid(), self.kind,
                                       placement.system_id(), placement.host_name()))
        self._last_probe = time.monotonic()    # the parent probes a child once it runs
        self._probed_from = True

    def _watch_parent(self, probe_interval: float, probe_misses: int, start_timeout: float):
        """The parent-death signal cannot end an actor whose parent lives in another system
        (another host, or the leader's system on the same host): if the leader dies, the bot
        group it placed here would keep its session open, and a restarted leader would place a
        second one. So such an actor stops itself when its parent's probes stop for longer than
        the parent itself waits before it gives up on a child (`probe_misses` + 2 intervals).
        A parent probes only a running child: until this actor reports Started, the silence
        allowed is the parent's start timeout (it kills a child that takes longer) plus two
        intervals."""
        self._parent_timeout = probe_interval * (probe_misses + 2)
        self._start_grace = max(self._parent_timeout, start_timeout + 2 * probe_interval)
        self._last_probe = time.monotonic()
        self.every(PARENT_WATCH, probe_interval)

    def _check_parent(self):
        silent = time.monotonic() - self._last_probe
        limit = self._parent_timeout if self._probed_from else self._start_grace
        if silent <= limit or self._stopped:
            return
        self.cancel_timer(PARENT_WATCH)
        self.log.error("%s: no probe from the parent (in another system) for %.1fs: it is "
                       "gone or unreachable; stopping, so this session is not left running",
                       self.path, silent)
        self.parent = None      # nobody to report to
        self.on_stop_request(Stop("parent unreachable"), self.myAddress)

    def _run_stop(self):
        if self._stopped:
            return
        self._stopped = True
        try:
            self.on_stop()
        finally:
            if self.bridge is not None:
                self.bridge.close()

    def _crash(self, exc: BaseException):
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.log.error("%s crashed: %s\n%s", self.path or type(self).__name__, detail,
                       traceback.format_exc())
        if self.parent is not None:
            self.send(self.parent, Crashed(self.child_id, detail[:500]))
        # In an inline run (a loop thread, system/inline.py) on_stop may join this very
        # thread: the runner runs it then, before it delivers anything else.
        if not inline.defer_if_inline(self._stop_after_crash):
            self._stop_after_crash()
        self.send(self.myAddress, ActorExitRequest())

    def _stop_after_crash(self):
        try:
            self._run_stop()
        except Exception:
            self.log.exception("%s: on_stop failed after a crash", self.path)

    def watch_fd(self, fd: int, callback) -> None:
        """Call `callback()` in this actor whenever FD is readable (processes base only:
        thespian's TCP base watches it; the in-process base never sees these)."""
        self._watched[fd] = callback

    def unwatch_fd(self, fd: int) -> None:
        self._watched.pop(fd, None)

    # ---- bridge and timers --------------------------------------------------------------
    def open_bridge(self) -> Bridge:
        if self.bridge is None:
            self.bridge = Bridge(self.myAddress)
        return self.bridge

    def every(self, name: str, period: float):
        """Periodic timer; re-arming replaces the previous one of the same name."""
        self._arm(name, period, period)

    def after(self, name: str, delay: float):
        self._arm(name, delay, 0.0)

    def after_unless_armed(self, name: str, delay: float):
        """`after()`, unless the timer is already armed (then it keeps its earlier due time)."""
        if not self.armed(name):
            self.after(name, delay)

    def cancel_timer(self, name: str):
        self._timers.pop(name, None)

    def armed(self, name: str) -> bool:
        """Whether the timer NAME is set (`after()`/`every()` and not yet fired or cancelled)."""
        return name in self._timers

    def _arm(self, name, delay, period):
        """Timers are kept here, and thespian holds (about) one wake-up per actor: the one for
        the earliest due timer. Why: thespian never forgets a wake-up, even one whose timer was
        replaced or cancelled, and the in-process base scans every pending wake-up before every
        message it delivers, so one wake-up per `after()` made every message slower the busier
        the system got (28 % of the busy samples in a py-spy profile of a flooded fleet)."""
        due = time.monotonic() + max(0.0, delay)
        self._timers[name] = [due, period]
        self._ensure_wakeup(due)

    # A wake-up within this much of a timer's due time serves it (thespian may fire early by
    # its clock granularity; firing a timer 1 ms early is harmless, a second wake-up is not).
    _TIMER_SLACK_S = 0.001

    def _ensure_wakeup(self, due: float):
        pending = self._wakeups_due
        while pending and pending[0] < time.monotonic() - 5.0:
            heapq.heappop(pending)   # long overdue: its wake-up was lost, do not wait for it
        if pending and pending[0] <= due + self._TIMER_SLACK_S:
            return   # an earlier wake-up is coming; it re-arms for this timer if needed
        heapq.heappush(pending, due)
        self.wakeupAfter(max(0.0, due - time.monotonic()), payload=("timers",))

    def _handle_wakeup(self, msg: WakeupMessage):
        if msg.payload != ("timers",):
            self.on_wakeup(msg)
            return
        if self._wakeups_due:
            heapq.heappop(self._wakeups_due)   # thespian fires them in due order
        if self._stopped:
            return
        now = time.monotonic() + self._TIMER_SLACK_S
        fired = [name for name, (due, _) in self._timers.items() if due <= now]
        fired.sort(key=lambda n: self._timers[n][0])
        for name in fired:
            timer = self._timers.get(name)
            if timer is None or timer[0] > now or self._stopped:
                continue   # cancelled or re-armed later by an earlier timer's handler
            if timer[1] > 0:
                timer[0] = time.monotonic() + timer[1]
            else:
                del self._timers[name]
            if name == PARENT_WATCH:
                self._check_parent()
            else:
                self.on_timer(name)
        if self._timers and not self._stopped:
            self._ensure_wakeup(min(due for due, _ in self._timers.values()))

    # ---- hooks for subclasses -----------------------------------------------------------
    def on_start(self, args: dict):
        """Runs once in the actor's context when its supervisor starts it."""

    def on_stop(self):
        """Runs once when the actor stops for any reason; release threads and sockets here."""

    def on_bridge(self, item):
        """An item posted to `self.bridge` from a background thread."""

    def left_behind(self) -> str:
        """After on_stop: what this actor could not stop (a library thread that would not end),
        "" when nothing. An actor with a process of its own leaves nothing in any case: the
        process ends. A host running it inside its own process (actors/hosted.py) ends that
        process instead, since nothing else would stop what is left."""
        return ""

    def on_timer(self, name: str):
        """A timer set with `every()` or `after()` fired."""

    def on_wakeup(self, msg: WakeupMessage):
        """A raw wakeupAfter() not set through `every()`/`after()`."""

    def on_child_exited(self, msg: ChildActorExited, sender):
        """A child actor exited (supervisors override this)."""

    def on_stop_request(self, msg: Stop, sender):
        """A clean stop was asked; supervisors override it to stop their children first."""
        self._run_stop()
        self.send(self.myAddress, ActorExitRequest())

    def on_env_update(self, msg: EnvUpdate):
        """A shared service moved; `self.env` is already updated (supervisors pass it on)."""

    def on_probe(self, msg: Probe, sender):
        """Health probe; the default answers at once. Actors with a worker thread override this
        to answer only when that thread answers, so a hung thread shows as a missed probe."""
        self.send(sender, ProbeReply(self.child_id, msg.seq, True))

    def on_unknown(self, msg, sender):
        self.log.warning("%s: unexpected message %s from %s", self.path or type(self).__name__,
                         type(msg).__name__, sender)
