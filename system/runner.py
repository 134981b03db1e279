"""The in-process runner: drives thespian's simpleSystemBase from the main thread.

simpleSystemBase runs actors only while the caller is inside tell/ask/listen, and it ignores
ThespianWatch. The runner is that caller: it delivers pending sends with `listen(0)`, then sleeps
in `select()` on every actor bridge's descriptor until the next thespian timer is due, so an idle
system uses no CPU and a background thread's result reaches its actor in well under a
millisecond. A bridge that fires is turned into a `BridgeWake()` told to its actor.

While it sleeps, a loop thread may deliver a hot-path update itself (system/inline.py); the
runner holds the inline driver's lock whenever it drives the base, and that thread wakes it
when it leaves work behind.

Before it sleeps, the runner collects young garbage if enough is waiting (system/idle_gc.py), so
that CPython's own collections, which start in whichever thread allocates, seldom land inside a
message's path.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import math
import select
import time

from thespian.system import simpleSystemBase as _simple
from thespian.system.timing import ExpirationTimer, currentTime

from messages.lifecycle import BridgeWake
from system import bridge, idle_gc, inline

log = logging.getLogger("tgfleet.runner")


class _Wakeup(tuple):
    """thespian's wake-up entry (target, ExpirationTimer, payload), ordered by due time and
    then by arrival, so that `base._wakeUps` can be a heap (a list, as thespian expects)."""

    def __new__(cls, entry, due: float, seq: int):
        self = super().__new__(cls, entry)
        self.key = (due, seq)
        return self

    def __lt__(self, other):
        return self.key < other.key


def install_wakeup_fast_path(base) -> None:
    """Keep simpleSystemBase's pending wake-ups in a heap ordered by due time.

    simpleSystemBase checks for expired wake-ups before EVERY message it delivers, and whenever
    an actor sets a timer, by building a timer view of every pending wake-up (tens to about a
    hundred in a fleet: thespian never forgets one, see FleetActor._arm): with thousands of
    messages a second that scan was the largest single cost of a busy in-process fleet. The
    earliest due time was then remembered so that the scan only ran once it had passed, but
    each pass still went through them all: 2.8 % of a light-load fleet's interpreter time
    (py-spy, 10 bots at 5 msg/s each). Now a check is a look at the heap's top, and each
    expired wake-up is one pop. Same results, same order (due time, then arrival)."""
    if getattr(base, "_tgfleet_fast_wakeups", False):
        return
    seq = itertools.count()

    def due_of(timer):
        due = getattr(timer, "_time_to_quit", None)
        return math.inf if due is None else due

    wakeups = [_Wakeup(e, due_of(e[1]), next(seq)) for e in base._wakeUps]
    heapq.heapify(wakeups)
    base._wakeUps = wakeups

    def add_wakeup(from_actor, time_period, payload):
        timer = ExpirationTimer(time_period)
        heapq.heappush(base._wakeUps, _Wakeup((from_actor, timer, payload), due_of(timer),
                                              next(seq)))

    def pop_expired(ct):
        heap = base._wakeUps
        expired = []
        while heap and heap[0].key[0] <= ct:
            expired.append(heapq.heappop(heap))
        return expired

    def next_due():
        """The earliest due time (thespian's clock), math.inf when nothing is pending."""
        heap = base._wakeUps
        return heap[0].key[0] if heap else math.inf

    base._add_wakeup = add_wakeup
    base._pop_expired_wakeups = pop_expired
    base._tgfleet_next_due = next_due
    base._tgfleet_fast_wakeups = True


def install_quiet_receive() -> None:
    """Skip simpleSystemBase's per-message debug record unless the Thespian logger wants it.

    simpleSystemBase hands every message to an actor through `actor_base_receive`, which first
    calls `logging.getLogger('Thespian').debug(...)`: a logger lookup under the logging lock
    and a level check per message, 2-3 % of the runner thread's time at 100 msg/s (py-spy)
    with the level at WARNING. Here the logger is looked up once and the record is only made
    when DEBUG is enabled, as before. Must run before actors are created: thespian binds the
    function to each actor at creation."""
    if getattr(_simple, "_tgfleet_quiet_receive", False):
        return
    thespian_log = logging.getLogger("Thespian")

    def actor_base_receive(actorInst, msg, sender):
        if thespian_log.isEnabledFor(logging.DEBUG):
            thespian_log.debug('Actor "%s" got message "%s" from "%s"', actorInst, msg, sender)
        actorInst.receiveMessage(msg, sender)

    _simple.actor_base_receive = actor_base_receive
    _simple._tgfleet_quiet_receive = True


class InProcessRunner:
    def __init__(self, asys, max_sleep: float = 1.0,
                 idle_gc_young: int = idle_gc.DEFAULT_YOUNG_AT):
        self.asys = asys
        self.idle_gc = idle_gc.IdleCollector(idle_gc_young)
        self.base = asys._systemBase
        install_wakeup_fast_path(self.base)
        self.max_sleep = max_sleep
        self.extra_fds: dict[int, object] = {}     # fd -> callable(fd), e.g. a signal pipe
        external = self.base.actorRegistry["System:ExternalRequester"].address
        self.driver = inline.InlineDriver(self.base, external)
        self.extra_fds[self.driver.wake_fd] = lambda fd: self.driver.clear_wake()

    def _until_next_timer(self, limit: float) -> float:
        if self.base._pendingSends:
            return 0.0
        due = self.base._tgfleet_next_due()
        if due == math.inf:
            return limit
        return max(0.0, min(limit, due - currentTime()))

    def pump(self, timeout: float):
        """Run the system for at most `timeout` seconds or until an external response arrives;
        returns that response (or None)."""
        deadline = time.monotonic() + timeout
        drv = self.driver
        ready: list = []
        fds: dict = {}
        while True:
            with drv.runner_hold():   # runs a crash clean-up an inline run left, first
                drv.runner_wakes_at = math.inf    # awake: an inline run leaves work to us
                for fd in ready:
                    if fd in self.extra_fds:
                        self.extra_fds[fd](fd)
                    elif fd in fds:
                        addr, br = fds[fd]
                        if not br.closed:
                            self.asys.tell(addr, BridgeWake())
                # simpleSystemBase.listen(0) neither fires due timers nor delivers pending
                # sends (its loop ends before it starts): do both, then collect a response.
                self.base._realizeWakeups()
                self.base._runSends()
                resp = self.asys.listen(0)
                if resp is not None:
                    return resp
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                fds = {fd: (addr, br) for fd, addr, br in bridge.registered()}
                watch = list(fds) + list(self.extra_fds)
                wait = self._until_next_timer(min(left, self.max_sleep))
                drv.runner_wakes_at = time.monotonic() + wait
            # Outside the hold: a loop thread may deliver inline as soon as it has the
            # interpreter again, instead of finding the runner "busy" and handing over.
            self.idle_gc.before_sleep()
            try:
                ready, _, _ = select.select(watch, [], [], wait)
            except (OSError, ValueError):
                ready = []   # a bridge closed between listing and select; list it again

    def ask(self, addr, msg, timeout: float):
        self.asys.tell(addr, msg)
        return self.pump(timeout)

    def close(self) -> None:
        log.info("inline delivery: %s", self.driver.stats)
        log.info("idle collections: %s", self.idle_gc.stats)
        self.driver.close()
