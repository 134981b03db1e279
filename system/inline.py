"""Inline delivery: a loop thread delivers its own update to the actors when the runner is idle.

Why: on the in-process base a message used to cross two thread hand-overs that a plain asyncio
script does not have. The backend's loop thread posted the update to its actor's bridge and woke
the runner thread; the runner delivered it (backend -> bot -> backend); the backend handed the
reply back to its loop thread with another wake-up. At light load those wake-ups were most of
the latency between tgfleet in-process and baseline (a) (bench/RESULTS.md, ninth session).

Here a thread that posts to a bridge marked `inline` may run thespian's deliveries itself, in
its own thread, instead of waking the runner, when nothing else is being delivered:
- thespian's simpleSystemBase is driven by one thread at a time. The runner holds `lock` while
  it delivers and releases it only while it sleeps in select(); every entry point of the base
  (tell, ask, listen, createActor, shutdown) takes it too. A poster takes it only if it is free
  (never waits), so actors still run one at a time, each message to completion, in order.
- Only the hot path runs inline: the bridge wake-up and the messages in `HOT` (updates to the
  bot, actions to the backend, their results, the rate limiter's grants). The first other
  message in the queue (a stop, a timer, a store request) ends the inline run and the runner is
  woken to deliver it and the rest, in order. So stops, crashes' clean-ups and anything that
  may block on a loop thread run on the runner's thread, as before.
- A crash inside an inline run defers the actor's `on_stop` to the runner (before it delivers
  anything else), because `on_stop` joins the very loop thread the run is on.
- Timers are the runner's: one that falls due during an inline run waits for the run's end
  (a few deliveries; the hot messages behind it go first) and wakes the runner then, as does
  one set inline that is due before the runner planned to wake up, or a reply for the
  system's external caller.
On the processes base there is no runner and nothing here is installed.
"""
from __future__ import annotations

import functools
import logging
import math
import socket
import threading
import time

from thespian.actors import WakeupMessage
from thespian.system.simpleSystemBase import PendingSend
from thespian.system.timing import currentTime

from messages.lifecycle import BridgeWake

log = logging.getLogger("tgfleet.inline")

# Message class names an inline run may deliver (names: messages/ must not import actors/).
HOT = frozenset({"BridgeWake", "UpdateBatch", "ActionBatch", "ActionResults", "UpdatesDone",
                 "GrantRequest", "Grant"})
MAX_INLINE = 64          # deliveries per inline run; the rest goes to the runner
# A timer due this little before the runner's planned wake-up does not wake it early: the
# runner computed that wake-up from the very timer (on another clock: the two conversions
# differ by microseconds either way), and a timer served 2 ms late is harmless. Without it
# about two in three light-load messages woke the runner in the middle of their hot path.
TIMER_WAKE_SLACK_S = 0.002
INLINE_WAKE = BridgeWake(readable=False)   # an inline post wrote no wake-up byte
ENTRY_POINTS = ("tell", "ask", "listen", "newPrimaryActor", "shutdown", "updateCapability",
                "loadActorSource", "unloadActorSource")

# Per thread: .depth > 0 inside a base, .driver the base's driver then, .inline in an inline run
_state = threading.local()


def current() -> "InlineDriver | None":
    """The driver of the base this thread is delivering messages of now (None outside one):
    a bridge created by an actor remembers it."""
    return getattr(_state, "driver", None) if _inside() else None


def defer_if_inline(fn) -> bool:
    """In an inline run (on a loop thread, not the runner's): leave `fn()` to the runner, which
    calls it before it delivers anything else, and return True. Otherwise False (call it now)."""
    if not getattr(_state, "inline", False):
        return False
    _state.driver.deferred.append(fn)
    return True


def _inside() -> bool:
    return getattr(_state, "depth", 0) > 0


class InlineDriver:
    """The lock that serializes every driver of one simpleSystemBase, and the inline runs."""

    def __init__(self, base, external_address):
        self.base = base
        self.external = external_address
        self.lock = threading.RLock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.wake_fd = self._wake_r.fileno()
        self.runner_wakes_at = math.inf    # monotonic: when the runner's select() returns
        self.deferred: list = []           # callables the runner runs before its next delivery
        self.hot = HOT                     # class names an inline run may deliver
        self.runner_waiting = False        # the runner wants the lock: posters keep off it
        self.closed = False
        self.stats = {"inline_runs": 0, "inline_deliveries": 0, "direct": 0, "busy": 0,
                      "handed_over": 0}
        self._wrap_entry_points()

    # ---- serialization ------------------------------------------------------------------
    def hold(self):
        """Context manager: drive the base from this thread (re-entrant). A crash clean-up an
        inline run left is run first: nothing may reach the crashed actor before it."""
        return _Held(self)

    def runner_hold(self):
        """`hold()` for the runner: posters stop starting inline runs while it waits."""
        return _Held(self, runner=True)

    def _wrap_entry_points(self):
        for name in ENTRY_POINTS:
            fn = getattr(self.base, name, None)
            if fn is None or getattr(fn, "_tgfleet_locked", False):
                continue
            setattr(self.base, name, self._locked(fn))

    def _locked(self, fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            with _Held(self):
                return fn(*args, **kwargs)
        call._tgfleet_locked = True
        return call

    # ---- the runner's side ----------------------------------------------------------------
    def clear_wake(self) -> None:
        try:
            self._wake_r.recv(4096)
        except (BlockingIOError, InterruptedError):
            pass   # nothing pending: select() returned for another descriptor

    def run_deferred(self) -> None:
        """Called by the runner (holding the lock) before it delivers anything."""
        while self.deferred:
            fn = self.deferred.pop(0)
            try:
                fn()
            except Exception:
                log.exception("deferred clean-up %r failed", fn)

    def _wake_runner(self) -> None:
        self.stats["handed_over"] += 1
        try:
            self._wake_w.send(b"x")
        except BlockingIOError:
            pass   # a wake-up byte is already pending
        except OSError as exc:
            log.warning("could not wake the runner: %s", exc)

    # ---- a poster's side ----------------------------------------------------------------
    def deliver(self, address) -> bool:
        """Deliver `BridgeWake()` to `address` and what it causes on the hot path, in this
        thread, if the base is idle. False (nothing done) if it is busy, the runner is waiting
        for it, or this thread is already inside it; the caller then wakes the runner."""
        if self.closed or self.runner_waiting or _inside() or \
                not self.lock.acquire(blocking=False):
            self.stats["busy"] += 1      # unlocked: a lost count at worst
            return False
        _state.depth = 1
        _state.driver = self
        try:
            base = self.base
            if self.closed or self.runner_waiting or base._pendingSends or self.deferred:
                return False      # the runner has work queued: it goes first, in order
            _state.inline = True
            self.stats["inline_runs"] += 1
            pending = base._pendingSends
            pending.append(PendingSend(self.external, INLINE_WAKE, address))
            try:
                self._run_hot(base, pending)
            finally:
                if pending or self.deferred or self._responses_waiting() or \
                        self._timer_before_runner_wakes():
                    self._wake_runner()
            return True
        finally:
            _state.inline = False
            _state.depth = 0
            _state.driver = None
            self.lock.release()

    def _run_hot(self, base, pending) -> None:
        """thespian's `_runSends`, hot messages only: due timers are queued before each
        delivery (as thespian does), and the first message that is neither hot nor a timer
        ends the run. A timer is passed over: the hot messages behind it go first, and the
        runner, woken after the run since the timer is still pending (`deliver`), delivers it
        a few deliveries later at most (MAX_INLINE). A timer promises no order against
        messages. Why: in a traced light-load run (10 bots x 1 msg/s, 600 messages) 2 of the
        10 slowest had met a bot's timer on their way (dedup record, updates done), which
        ended the run there and left the rest of the message's path to the runner
        (+0.9-1 ms). Leaving due timers unqueued instead kept the runner asleep under load: every update then went
        inline in small batches, and the fleet answered 1,500-2,100 instead of 2,600-2,700
        msg/s (bench --quick)."""
        done = 0
        try:
            while pending and done < MAX_INLINE and not self.deferred:
                base._realizeWakeups()
                i = 0
                while i < len(pending) and type(pending[i].msg) is WakeupMessage:
                    i += 1
                if i == len(pending) or type(pending[i].msg).__name__ not in self.hot:
                    break
                with base._private_lock:
                    ps = pending.pop(i)
                self._deliver_one(base, ps)
                done += 1
        finally:
            self.stats["inline_deliveries"] += done

    def _deliver_one(self, base, ps) -> None:
        """One hot message. To an actor whose `receiveMessage` never raises (FleetActor: it
        catches, reports and stops itself) it is called directly: everything else thespian's
        `_runSingleSend` does for a message (poison retries, system messages, dead letters,
        child exits) cannot apply, and skipping it saves 0.8-2.3 us per delivery (a delivery
        to a trivial handler: 2.6-4.1 us through thespian, 1.8 direct), 3-5 deliveries per
        light-load message. Anything else, or an exception after all, goes through thespian
        as before."""
        ref = base.actorRegistry.get(ps.toActor.actorAddressString) if not ps.attempts \
            else None
        inst = ref.instance if ref is not None else None
        if not getattr(inst, "receive_never_raises", False):
            base._runSingleSend(ps)
            return
        self.stats["direct"] += 1
        try:
            inst.receiveMessage(ps.msg, ps.sender)
        except Exception:
            log.exception("%s raised from receiveMessage; thespian retries the message",
                          type(inst).__name__)
            ps.attempts += 1
            base._runSingleSend(ps)

    def _responses_waiting(self) -> bool:
        ext = self.base.actorRegistry.get("System:ExternalRequester")
        return bool(getattr(getattr(ext, "instance", None), "responses", None))

    def _timer_before_runner_wakes(self) -> bool:
        due = self.base._tgfleet_next_due()    # runner.install_wakeup_fast_path
        if due == math.inf:
            return False
        return time.monotonic() + (due - currentTime()) < \
            self.runner_wakes_at - TIMER_WAKE_SLACK_S

    def close(self) -> None:
        """After the system shut down: no more inline runs (bridges may outlive it)."""
        self.closed = True
        for sock in (self._wake_r, self._wake_w):
            sock.close()


class _Held:
    __slots__ = ("driver", "runner", "outer")

    def __init__(self, drv, runner: bool = False):
        self.driver = drv
        self.runner = runner
        self.outer = None

    def __enter__(self):
        drv = self.driver
        if self.runner:
            drv.runner_waiting = True
            try:
                drv.lock.acquire()
            finally:
                drv.runner_waiting = False
        else:
            drv.lock.acquire()
        depth = getattr(_state, "depth", 0)
        self.outer = getattr(_state, "driver", None) if depth else None
        _state.driver = drv       # the base this thread delivers in now (bridges remember it)
        _state.depth = depth + 1
        if drv.deferred and depth == 0:   # outermost only: never inside another delivery
            drv.run_deferred()
        return drv

    def __exit__(self, *exc):
        _state.depth -= 1
        _state.driver = self.outer
        self.driver.lock.release()
        return False
