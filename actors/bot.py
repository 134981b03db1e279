"""BotActor: one bot's handler pipeline, its bounded send queue and its accounting.

Where it sits: a `BotGroup` starts the bot's backend first and the bot after it; the bot finds
the backend at `env['sibling.backend']`, the shared services at `env['ratelimit']`,
`env['eventbus']`, `env['store']` and `env['metrics']` (each optional).

The path of an update (why each step is here):
1. `UpdateBatch` from the backend. Dedup happens twice: the pipeline's in-memory LRU catches
   redeliveries while the bot lives; with a store in env, the bot first loads the keys its
   previous incarnations recorded into that LRU (`DedupRecent`, once at start; updates wait
   for it, at most `store_timeout_s`). When the store held no more keys than the LRU's size,
   the LRU alone then knows everything answered before. Otherwise updates dated before this
   bot started (+ a clock margin: only those can have been answered by a previous
   incarnation, typically GetDifference redeliveries after a restart) cost ONE `DedupCheck`
   per batch before they are handled. An update's key is written to the store (in the
   background, at most every DEDUP_RECORD_S with one record in flight, kept until the store
   confirms it) once every action it
   caused is done: sent, or dropped for good. So a crash between an answer and its record
   gives at worst a duplicate within the dedup window, never a message left unanswered
   (at-least-once for live updates; the per-batch DedupCheck of old updates records as it
   checks). At the same moment the update is reported finished to the backend
   (`UpdatesDone`, at most every UPDATES_DONE_S), which keeps every update until then and
   gives the unfinished ones to the next bot if this one dies: an update held in a killed
   bot's queue is handled again, not lost. Batches are processed strictly in arrival order;
   if the store has not answered within `store_timeout_s` the LRU decides alone (counted),
   and a circuit breaker stops asking a store that keeps failing.
2. `Pipeline.process` runs the handlers (a raising handler is counted, the rest go on).
3. Actions go into ONE bounded queue (`Outbox`): FIFO per chat, `queue_max` actions waiting in
   total; a full queue refuses new actions with a counted, logged drop. `Publish` actions go to
   the event bus instead (they never touch Telegram or the limiter).
4. At most one `GrantRequest` to the rate limiter is outstanding, covering the whole queue (per
   chat counts, capped by the free in-flight room); on `Grant` the granted number of actions per
   chat leave in ONE `ActionBatch`; if more wait, the bot asks again after `retry_in`. Without a
   limiter in env everything is granted at once. At most `max_in_flight` actions are at the
   backend at any time.
5. `ActionResults`: success counts as sent; flood_wait / network / timeout are retried after the
   RetryPolicy delay (for flood_wait at least the server's wait, and the limiter is told with a
   `FloodWaitReport`); fatal kinds and exhausted retries are dropped, counted and logged with the
   reason. An action without a result for `result_timeout_s` is treated as a timeout.

Accounting invariant (`BotStatsRequest` -> `BotStats`): every accepted action ends as sent,
published, or a drop with a reason:
    accepted == sent + published + dropped + in_queue + in_flight + retry_pending
Memory is bounded: queue_max waiting + max_in_flight at the backend (retries of in-flight
actions re-enter even when new actions would be refused: they were already accepted).

Metrics (flushed once a second to env['metrics']): updates, dedup hits, handler errors, queue
depth and drops, last update age, retries, and tgfleet_bot_actions_total for the outcomes only
the bot knows (rejected = queue full, dropped = final drop, publish ok, timeout = no result).
Per-attempt outcomes and e2e latency are counted by the backend, which answered them: the
exporter sums sources, so counting them here too would double them.

Config (Start.args): name, account_kind ('bot'|'user'), handlers ([{"type": ..., ...}]),
dedup_size (10000), state_ttl_s (3600), state_max (10000), queue_max (1000), max_in_flight (256),
retry (RetryPolicy kwargs), tick_s (0.2), cleanup_s (60), result_timeout_s (60),
grant_timeout_s (2), store_timeout_s (1), store_breaker_failures (3), store_breaker_reset_s
(10). Other keys (for the backend) are ignored.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import time
import uuid
from collections import Counter, OrderedDict, deque

from actors.base import FleetActor
from actors.handlers import load_handler
from actors.handlers.pipeline import Pipeline
from messages.backend import (ActionBatch, ActionResult, ActionResults, AttachBot, BackendState,
                              BusEvent, FloodWaitReport, Grant, GrantRequest, PublishEvent,
                              SubscribeTopics, UnsubscribeAll, UpdatesDone)
from messages.bot import BotStats, BotStatsRequest
from messages.store import DedupCheck, DedupRecent, StoreReply
from messages.telegram import IncomingMessage, Publish, UpdateBatch, action_chat, update_key
from system import lane as lanes
from system.breaker import CircuitBreaker
from system.lease import BotLease
from system.metrics_client import MetricsBuffer
from system.procguard import in_own_process
from system.retry import ERROR_KINDS, FATAL_KINDS, RetryPolicy

ACTION_LABELS = {"SendText": "send_message", "SendMedia": "send_media",
                 "ForwardMessages": "forward", "EditText": "edit_message",
                 "DeleteMessages": "delete", "Publish": "publish"}
CHAT_KINDS = frozenset({"private", "group", "channel", "supergroup"})
MAX_CHAT_KINDS = 10_000        # remembered chat kinds (for the limiter), LRU
MAX_PENDING_BATCHES = 256      # batches waiting for the store's dedup answer
DEDUP_CLOCK_MARGIN_S = 2.0     # messages up to this long after our start are checked too
DEDUP_RECORD_S = 0.25          # fresh dedup keys are written to the store at most this often
UPDATES_DONE_S = DEDUP_RECORD_S  # finished updates are acknowledged to the backend this often
DEDUP_RESEND_S = 3.0           # an unconfirmed dedup record is sent again after this
MAX_UNCONFIRMED = 1000         # dedup records waiting for the store's confirmation
MAX_KEY_WAITS = 100_000        # updates whose actions are not done yet (then: record at once)
DROP_LOG_EVERY_S = 5.0
LEASE_ASK = 64                 # lease tokens asked for; the limiter hands out what it allows


def action_label(action) -> str:
    return ACTION_LABELS.get(type(action).__name__, "other")


# ---- configuration ------------------------------------------------------------------------

def _number(args: dict, key: str, default, minimum, integer=False):
    value = args.get(key, default)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or not value >= minimum:
        kind = "an int" if integer else "a number"
        raise ValueError(f"bot config: {key!r} must be {kind} >= {minimum}, got {value!r}")
    return value


def parse_config(args: dict) -> dict:
    """Validate the bot config; every problem is a ValueError that names the key."""
    if not isinstance(args, dict):
        raise ValueError(f"bot config must be a dict, got {type(args).__name__}")
    name = args.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"bot config: 'name' must be a non-empty string, got {name!r}")
    account_kind = args.get("account_kind", "bot")
    if account_kind not in ("bot", "user"):
        raise ValueError(f"bot {name}: 'account_kind' must be 'bot' or 'user', "
                         f"got {account_kind!r}")
    handlers = args.get("handlers", [])
    if not isinstance(handlers, (list, tuple)):
        raise ValueError(f"bot {name}: 'handlers' must be a list, got {type(handlers).__name__}")
    retry = args.get("retry", {})
    if not isinstance(retry, dict):
        raise ValueError(f"bot {name}: 'retry' must be a dict of RetryPolicy arguments")
    try:
        retry_policy = RetryPolicy(**retry)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bot {name}: bad 'retry' config {retry!r}: {exc}") from None
    return {
        "name": name, "account_kind": account_kind, "handlers": list(handlers),
        "retry": retry_policy,
        "dedup_size": _number(args, "dedup_size", 10000, 1, integer=True),
        "state_ttl_s": float(_number(args, "state_ttl_s", 3600.0, 0.001)),
        "state_max": _number(args, "state_max", 10000, 1, integer=True),
        "queue_max": _number(args, "queue_max", 1000, 1, integer=True),
        "max_in_flight": _number(args, "max_in_flight", 256, 1, integer=True),
        "tick_s": float(_number(args, "tick_s", 0.2, 0.001)),
        "cleanup_s": float(_number(args, "cleanup_s", 60.0, 0.01)),
        "result_timeout_s": float(_number(args, "result_timeout_s", 60.0, 0.01)),
        "grant_timeout_s": float(_number(args, "grant_timeout_s", 2.0, 0.01)),
        "store_timeout_s": float(_number(args, "store_timeout_s", 1.0, 0.01)),
        "store_breaker_failures": _number(args, "store_breaker_failures", 3, 1, integer=True),
        "store_breaker_reset_s": float(_number(args, "store_breaker_reset_s", 10.0, 0.0)),
    }


def build_handlers(name: str, specs: list) -> list:
    """Handlers from config entries {"type": builtin or dotted path, ...its config}."""
    handlers = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or "type" not in spec:
            raise ValueError(f"bot {name}: handlers[{i}] must be a dict with a 'type', "
                             f"got {spec!r}")
        config = {k: v for k, v in spec.items() if k != "type"}
        try:
            handlers.append(load_handler(spec["type"], config))
        except ValueError as exc:
            raise ValueError(f"bot {name}: handlers[{i}] ({spec['type']!r}): {exc}") from None
        except Exception as exc:   # a custom handler's constructor may raise anything
            raise ValueError(f"bot {name}: handlers[{i}] ({spec['type']!r}): "
                             f"{type(exc).__name__}: {exc}") from None
    return handlers


# ---- the bounded queue and its accounting (no thespian here) --------------------------------

class Item:
    __slots__ = ("seq", "aid", "action", "chat", "attempts", "sent_at", "last_error", "key")

    def __init__(self, seq: int, action, chat: int, key=None) -> None:
        self.seq, self.action, self.chat = seq, action, chat
        self.key = key           # dedup key of the update that caused it (recorded when done)
        self.aid = ""
        self.attempts = 0        # failed attempts so far
        self.sent_at = 0.0
        self.last_error = ""


class Outbox:
    """Queued (per chat, FIFO), in flight (at the backend) and waiting to be retried actions,
    with the counters that prove none is lost. `clock` is monotonic seconds."""

    def __init__(self, queue_max: int, max_in_flight: int, retry: RetryPolicy,
                 id_prefix: str = "", clock=time.monotonic) -> None:
        self.queue_max = queue_max
        self.max_in_flight = max_in_flight
        self.retry = retry
        self.clock = clock
        self.queues: dict[int, deque] = {}
        self.queued = 0
        self.in_flight: dict[str, Item] = {}
        self.retry_heap: list = []            # (due, seq, Item)
        self._seq = itertools.count(1)
        self._aid = itertools.count(1)
        self._prefix = id_prefix
        self._rotate = 0
        self.accepted = 0
        self.sent = 0
        self.published = 0
        self.retries = 0
        self.late_results = 0
        self.dropped: Counter = Counter()

    # ---- in ---------------------------------------------------------------------------
    def offer(self, action, chat: int, key=None) -> bool:
        """Accept `action` into the queue; False (counted as a queue_full drop) when full."""
        self.accepted += 1
        if self.queued + len(self.retry_heap) >= self.queue_max:
            self.dropped["queue_full"] += 1
            return False
        q = self.queues.get(chat)
        if q is None:
            q = self.queues[chat] = deque()
        q.append(Item(next(self._seq), action, chat, key))
        self.queued += 1
        return True

    def refuse(self, reason: str) -> None:
        """An action accepted and dropped at once (no chat, no event bus)."""
        self.accepted += 1
        self.dropped[reason] += 1

    def count_published(self) -> None:
        self.accepted += 1
        self.published += 1

    # ---- out --------------------------------------------------------------------------
    def room(self) -> int:
        return self.max_in_flight - len(self.in_flight)

    def wants(self, room: int) -> dict:
        """chat -> n for a grant request: the whole queue if it fits in `room`, else `room`
        shared evenly (water-filling) over the chats, starting at a rotating chat so that no
        chat is always left out when there are more chats than room."""
        if room <= 0 or not self.queued:
            return {}
        chats = list(self.queues)
        if self.queued <= room:
            return {c: len(self.queues[c]) for c in chats}
        self._rotate = (self._rotate + 1) % len(chats)
        chats = chats[self._rotate:] + chats[:self._rotate]
        out: dict[int, int] = {}
        left, active = room, chats
        while left > 0 and active:
            each = max(1, left // len(active))
            still = []
            for c in active:
                if left == 0:
                    break
                give = min(each, len(self.queues[c]) - out.get(c, 0), left)
                out[c] = out.get(c, 0) + give
                left -= give
                if out[c] < len(self.queues[c]):
                    still.append(c)
            active = still
        return out

    def take(self, chat: int, n: int) -> list:
        q = self.queues.get(chat)
        if q is None or n <= 0:
            return []
        items = [q.popleft() for _ in range(min(n, len(q)))]
        if not q:
            del self.queues[chat]
        self.queued -= len(items)
        return items

    def launch(self, items: list) -> tuple:
        """Give each item a fresh action id (late results of an earlier attempt can never be
        mistaken for this one), mark it in flight; returns ActionBatch items."""
        now = self.clock()
        out = []
        for item in items:
            item.aid = f"{self._prefix}{next(self._aid)}"
            item.sent_at = now
            self.in_flight[item.aid] = item
            out.append((item.aid, item.action))
        return tuple(out)

    # ---- results ----------------------------------------------------------------------
    def complete(self, res: ActionResult):
        """-> (outcome, item, reason): outcome ok | retry | drop | unknown."""
        item = self.in_flight.pop(res.action_id, None)
        if item is None:
            self.late_results += 1
            return "unknown", None, ""
        if res.ok:
            self.sent += 1
            return "ok", item, ""
        item.attempts += 1
        item.last_error = res.error
        kind = res.error_kind
        if kind not in ERROR_KINDS:
            return self._drop(item, "unknown_error")
        if kind in FATAL_KINDS:
            return self._drop(item, kind)
        if not self.retry.should_retry(item.attempts, kind):
            return self._drop(item, "retries_exhausted")
        server_wait = res.flood_wait_s if kind == "flood_wait" else 0.0
        due = self.clock() + self.retry.wait_for(item.attempts, server_wait)
        heapq.heappush(self.retry_heap, (due, item.seq, item))
        self.retries += 1
        return "retry", item, kind

    def _drop(self, item: Item, reason: str):
        self.dropped[reason] += 1
        return "drop", item, reason

    def next_retry_at(self):
        return self.retry_heap[0][0] if self.retry_heap else None

    def requeue_due(self, now: float) -> int:
        """Move retries that are due back to the FRONT of their chat's queue, oldest first."""
        due = []
        while self.retry_heap and self.retry_heap[0][0] <= now:
            due.append(heapq.heappop(self.retry_heap)[2])
        for item in sorted(due, key=lambda i: i.seq, reverse=True):
            q = self.queues.get(item.chat)
            if q is None:
                q = self.queues[item.chat] = deque()
            q.appendleft(item)
        self.queued += len(due)
        return len(due)

    def overdue(self, now: float, timeout: float) -> list:
        """Action ids in flight for longer than `timeout` (launch order = dict order)."""
        out = []
        for aid, item in self.in_flight.items():
            if now - item.sent_at < timeout:
                break
            out.append(aid)
        return out

    def drop_all(self) -> Counter:
        """At stop: everything still held becomes a counted drop."""
        lost = Counter()
        lost["stopped"] = self.queued + len(self.retry_heap)
        lost["stopped_in_flight"] = len(self.in_flight)
        self.queues.clear()
        self.retry_heap.clear()
        self.in_flight.clear()
        self.queued = 0
        lost = +lost
        self.dropped.update(lost)
        return lost

    def counters(self) -> dict:
        dropped = sum(self.dropped.values())
        return {"accepted": self.accepted, "sent": self.sent, "published": self.published,
                "dropped": dropped, "dropped_by_reason": dict(self.dropped),
                "in_queue": self.queued, "in_flight": len(self.in_flight),
                "retry_pending": len(self.retry_heap), "retries": self.retries,
                "late_results": self.late_results, "chats_queued": len(self.queues)}


class _Pending:
    """An UpdateBatch waiting (in order) for the store's dedup answer."""
    __slots__ = ("updates", "rid", "asked", "new", "resolved", "deadline")

    def __init__(self, updates: list) -> None:
        self.updates = updates
        self.rid = ""
        self.asked = frozenset()
        self.new = None            # keys the store says are new; None = LRU decides alone
        self.resolved = True
        self.deadline = 0.0


# ---- the actor ------------------------------------------------------------------------------

class BotActor(FleetActor):
    kind = "bot"

    def on_start(self, args):
        cfg = parse_config(args)
        self.cfg = cfg
        self.name = cfg["name"]
        self.log = logging.getLogger(f"tgfleet.bot.{self.name}")
        handlers = build_handlers(self.name, cfg["handlers"])
        if not handlers:
            self.log.warning("bot %s has no handlers: it will answer nothing", self.name)
        self.pipeline = Pipeline(self.name, 0, handlers, dedup_size=cfg["dedup_size"],
                                 state_ttl_s=cfg["state_ttl_s"], state_max=cfg["state_max"],
                                 log=self.log)
        self.inst = uuid.uuid4().hex[:8]
        self.outbox = Outbox(cfg["queue_max"], cfg["max_in_flight"], cfg["retry"],
                             id_prefix=f"{self.inst}-")
        self.metrics = MetricsBuffer(self.path)
        self.c: Counter = Counter()          # the bot's own counters (see counters())
        self.chat_kinds: OrderedDict = OrderedDict()
        self.pending: deque = deque()        # _Pending batches, in arrival order
        self.store_breaker = CircuitBreaker(cfg["store_breaker_failures"],
                                            cfg["store_breaker_reset_s"])
        self._rids = itertools.count(1)
        self.record_keys: list = []    # fresh dedup keys not yet written to the store
        self.key_waits: dict = {}      # update key -> its actions not done yet
        self.done_keys: list = []      # finished updates not yet acknowledged to the backend
        self.unconfirmed: dict = {}    # rid -> (keys, sent at): written, not yet confirmed
        self.connected = None                # unknown until the backend says
        self.self_id = 0
        self.last_update_at = None
        self.grant_pending = False           # a GrantRequest is outstanding
        self.lease = BotLease()              # sends allowed without asking (system/lease.py)
        self.grant_wait = False              # the "grant" timer (retry_in) is armed
        self.asked_chats: frozenset = frozenset()
        self.retry_due = None
        self.dedup_due = None                # when the armed "dedup" timer fires
        self.grant_sent_at = 0.0
        self.grant_timer = False             # the "grant_timeout" timer is armed
        self.drop_log: dict[str, list] = {}  # reason -> [last log time, unlogged count]
        self.topics = self.pipeline.subscriptions()
        self.lane = None                     # to the backend, when it offers one (lane.py)
        self.lane_address = ""
        # Dedup keys of previous incarnations: "loading" until the store answers DedupRecent,
        # then "complete" (the LRU holds all of them) or "partial" (old updates ask the store).
        self.warm_state = "partial"
        self.warm_rid = ""
        if self.env.get("store") is not None:
            self.warm_state = "loading"
            self.warm_rid = f"{self.inst}-w"
            self.warm_deadline = time.monotonic() + cfg["store_timeout_s"]
            self.send(self.env["store"], DedupRecent(self.warm_rid, self.name,
                                                     cfg["dedup_size"]))

        backend = self.env.get("sibling.backend")
        if backend is not None:
            self.send(backend, AttachBot(self.name))
        else:
            self.log.warning("bot %s: no backend in env (sibling.backend): actions will wait "
                             "in the queue", self.name)
        self.subscribe()
        self._arm_tick()
        self.every("cleanup", cfg["cleanup_s"])
        if "metrics" in self.env:
            self.metrics.schedule(self)

    def subscribe(self):
        """Tell the bus our topics (SubscribeTopics replaces a previous incarnation's set)."""
        bus = self.env.get("eventbus")
        if bus is not None:
            self.send(bus, SubscribeTopics(self.name, self.topics))

    # ---- updates in ----------------------------------------------------------------------
    def on_UpdateBatch(self, msg: UpdateBatch, sender):
        updates = []
        for u in msg.updates:
            if isinstance(u, IncomingMessage):
                updates.append(u)
                self._note_chat(u.chat_id, u.chat_kind)
            else:
                self.c["ignored_updates"] += 1
        self.c["updates"] += len(msg.updates)
        self.metrics.inc("tgfleet_bot_updates_total", len(msg.updates), bot=self.name)
        self.last_update_at = time.monotonic()
        self._admit(updates)

    def _admit(self, updates: list):
        """Queue one batch of incoming messages for processing, in arrival order, after the
        dedup decisions that need the store."""
        entry = _Pending(updates)
        store = self.env.get("store")
        if self.warm_state == "loading" and updates:
            entry.rid = self.warm_rid             # resolved when the recent keys arrive
            entry.resolved = False
            entry.deadline = self.warm_deadline
            self.pending.append(entry)
            self._drain()
            return
        if store is not None and updates:
            # Only a message older than this incarnation can have been answered by a previous
            # one (a redelivery after a restart), so only those cost a round trip to the store
            # before they are handled. Keys are written to the store in the background once
            # their update's actions are done (`_accept`, `dedup_record`), off the hot path.
            # With every recorded key already in the LRU ("complete") no update needs the
            # round trip.
            if self.warm_state == "complete":
                old = []
            else:
                cutoff = self.started_at + DEDUP_CLOCK_MARGIN_S   # + skew between the clocks
                old = [u for u in updates if not u.date or u.date < cutoff]
            # The store decides for every old key (not only those missing from the LRU): with
            # more recorded keys than the LRU holds, handling the batch can evict a key the LRU
            # vouched for before its turn comes.
            keys = tuple(dict.fromkeys(map(update_key, old)))
            if keys and not self.store_breaker.allow():
                self.c["store_dedup_skipped"] += 1    # the store keeps failing: LRU alone
            elif keys:
                entry.rid = f"{self.inst}-d{next(self._rids)}"
                entry.asked = frozenset(keys)
                entry.resolved = False
                entry.deadline = time.monotonic() + self.cfg["store_timeout_s"]
                self.send(store, DedupCheck(entry.rid, self.name, keys))
        self.pending.append(entry)
        if len(self.pending) > MAX_PENDING_BATCHES:
            self._fallback(self.pending[0], "too many batches waiting for the store")
        self._drain()

    def record_dedup_keys(self, keys=None):
        """Write fresh dedup keys to the store without waiting for it (also on stop). They are
        kept until the store confirms them and sent again after DEDUP_RESEND_S or when the
        store moves, so a store restart does not open a window for duplicate answers.
        One record is in flight at a time: keys that arrive meanwhile go out together when
        the store confirms it. Why: fifty bots each writing every DEDUP_RECORD_S (and resending
        what a busy store had not confirmed yet) fed the store faster than it answered, and
        thespian's transport slows sharply once sends queue up (a retry storm)."""
        store = self.env.get("store")
        if store is None:
            return
        if keys is None:
            if self.unconfirmed and not self._stopped:
                return   # the store's confirmation of the record in flight sends these
            keys = tuple(dict.fromkeys(self.record_keys))
            self.record_keys.clear()
        if not keys:
            return
        rid = f"{self.inst}-r{next(self._rids)}"
        self.unconfirmed[rid] = (keys, time.monotonic())
        while len(self.unconfirmed) > MAX_UNCONFIRMED:
            self.unconfirmed.pop(next(iter(self.unconfirmed)))
            self.c["store_dedup_errors"] += 1
        # background: nobody waits for it, the store may commit it with other bots' records
        # (not on stop: the store drains its queue when it stops, but a bot's stop is no reason
        # to keep its last record waiting)
        self.send(store, DedupCheck(rid, self.name, keys, background=not self._stopped))
        if not self._stopped:
            self.after_unless_armed("dedup_resend", DEDUP_RESEND_S)

    def resend_dedup_keys(self, older_than: float):
        """Send the unconfirmed records older than `older_than` again, as one record."""
        now = time.monotonic()
        keys: dict = {}
        for rid in [r for r, (_, t) in self.unconfirmed.items() if now - t >= older_than]:
            keys.update(dict.fromkeys(self.unconfirmed.pop(rid)[0]))
        if keys:
            self.record_dedup_keys(tuple(keys))

    def _record_confirmed(self, rid: str):
        self.unconfirmed.pop(rid, None)
        if self.record_keys and not self.unconfirmed:
            self.after_unless_armed("dedup_record", DEDUP_RECORD_S)

    def _note_chat(self, chat_id: int, kind: str):
        kinds = self.chat_kinds
        kinds[chat_id] = kind if kind in CHAT_KINDS else ""
        kinds.move_to_end(chat_id)
        if len(kinds) > MAX_CHAT_KINDS:
            kinds.popitem(last=False)

    def on_StoreReply(self, msg: StoreReply, sender):
        if msg.request_id == self.warm_rid and self.warm_rid:
            self._warmed(msg)
            return
        if msg.request_id.startswith(f"{self.inst}-r"):
            if msg.ok:
                self._record_confirmed(msg.request_id)
            else:            # kept in `unconfirmed`: sent again by the dedup_resend timer
                self.c["store_dedup_errors"] += 1
            return
        entry = next((p for p in self.pending if p.rid == msg.request_id), None)
        if entry is None or entry.resolved:
            self.c["store_late_replies"] += 1
            return
        if msg.ok and isinstance(msg.value, (tuple, list)):
            entry.new = frozenset(msg.value)
            entry.resolved = True
            self.store_breaker.record_success()
        else:
            self.c["store_dedup_errors"] += 1
            self._fallback(entry, f"store error: {msg.error or msg.value!r}")
        self._drain()

    def _warmed(self, msg: StoreReply):
        """The store's answer to DedupRecent: load the keys, then let the waiting batches go
        (through the per-batch DedupCheck when the store holds more keys than the LRU)."""
        if self.warm_state != "loading":
            self.c["store_late_replies"] += 1
            return
        if msg.ok and isinstance(msg.value, (tuple, list)):
            self.pipeline.dedup.load(msg.value)
            self.c["dedup_keys_loaded"] += len(msg.value)
            self.warm_state = "complete" if len(msg.value) < self.cfg["dedup_size"] \
                else "partial"
            self.store_breaker.record_success()
        else:
            self.c["store_dedup_errors"] += 1
            self.store_breaker.record_failure()
            self._log_limited("store_fallback", f"bot {self.name}: cannot load recent dedup "
                                                f"keys ({msg.error or msg.value!r}): old "
                                                f"updates are checked one batch at a time")
            self.warm_state = "partial"
        self._release_warm_waiters()

    def _release_warm_waiters(self):
        waiting = [p for p in self.pending if p.rid == self.warm_rid and not p.resolved]
        self.pending = deque(p for p in self.pending if p not in waiting)
        for entry in waiting:   # in order, through the normal path, now that warm_state is set
            self._admit(entry.updates)
        self._drain()

    def _fallback(self, entry: _Pending, why: str):
        entry.new = None
        entry.resolved = True
        self.store_breaker.record_failure()
        self.c["store_dedup_fallbacks"] += 1
        self._log_limited("store_fallback", f"bot {self.name}: dedup without the store "
                                            f"({why}); the in-memory LRU decides")

    def _drain(self):
        while self.pending and self.pending[0].resolved:
            self._process(self.pending.popleft())
        due = self.pending[0].deadline if self.pending else None
        if due is None:
            if self.dedup_due is not None:
                self.cancel_timer("dedup")
                self.dedup_due = None
        elif due != self.dedup_due:
            # one timer for the head batch, not one per batch
            self.dedup_due = due
            self.after("dedup", max(0.0, due - time.monotonic()))

    def _process(self, entry: _Pending):
        lru = self.pipeline.dedup
        for u in entry.updates:
            key = update_key(u)
            if entry.new is not None and key in entry.asked and key not in entry.new:
                self.c["store_dedup_hits"] += 1   # answered before a restart
                lru.seen(key)
                self._update_done(key)
                continue
            known = key in lru        # a dedup hit: no actions, nothing new to record
            self._accept(self.pipeline.process(u), key=None if known else key, pump=False)
            if known:
                self._update_done(key)
        self._arm_tick()
        self.pump()

    def on_BusEvent(self, msg: BusEvent, sender):
        self.c["events_in"] += 1
        if msg.source == self.name:
            return   # the bus never echoes, but a misrouted event must not loop
        self._accept(self.pipeline.on_event(msg.topic, msg.payload))
        self._arm_tick()

    def _arm_tick(self):
        """Tick while a handler has time-based work waiting, and only then."""
        if not self.armed("tick") and self.pipeline.needs_tick():
            self.every("tick", self.cfg["tick_s"])

    # ---- actions into the queue ------------------------------------------------------------
    def _accept(self, actions: list, key=None, pump: bool = True):
        """Queue ACTIONS. KEY: the dedup key of the update that caused them; it is written to
        the store once all of them are done (sent, or dropped for good): a crash before that
        makes a redelivered update be handled again (at-least-once, a duplicate at worst),
        never silently unanswered."""
        queued = 0
        for action in actions:
            label = action_label(action)
            if isinstance(action, Publish):
                self._publish(action)
                continue
            chat = action_chat(action)
            if isinstance(chat, bool) or not isinstance(chat, int):
                self.outbox.refuse("no_chat" if chat is None else "bad_chat")
                self.metrics.inc("tgfleet_bot_actions_total", bot=self.name, action=label,
                                 result="dropped")
                self._log_limited("no_chat", f"bot {self.name}: dropped {label}: it names "
                                             f"no chat ({type(action).__name__})")
                continue
            if not self.outbox.offer(action, chat, key):
                self.metrics.inc("tgfleet_bot_queue_drops_total", bot=self.name)
                self.metrics.inc("tgfleet_bot_actions_total", bot=self.name, action=label,
                                 result="rejected")
                self._log_limited("queue_full", f"bot {self.name}: queue full "
                                                f"({self.cfg['queue_max']}): dropped {label} "
                                                f"to chat {chat}")
            else:
                queued += 1
        if key is not None:
            if queued and len(self.key_waits) < MAX_KEY_WAITS:
                self.key_waits[key] = self.key_waits.get(key, 0) + queued
            else:
                self._record_key(key)
        if pump:
            self.pump()

    def _key_done(self, key):
        """One action caused by update KEY is done for good."""
        n = self.key_waits.get(key)
        if n is None:
            return
        if n > 1:
            self.key_waits[key] = n - 1
        else:
            del self.key_waits[key]
            self._record_key(key)

    def _record_key(self, key):
        """Update KEY is finished: acknowledge it to the backend, record it in the store. Both
        go on the same timer (`updates_done`): one wake-up per finished update at light load,
        not two."""
        self._update_done(key)
        if self.env.get("store") is None:
            return
        self.record_keys.append(key)

    def _update_done(self, key):
        """Tell the backend (batched, at most every UPDATES_DONE_S) that update KEY is finished,
        so it stops keeping it for a successor of this bot (`UpdatesDone`)."""
        self.done_keys.append(key)
        self.after_unless_armed("updates_done", UPDATES_DONE_S)

    def _send_updates_done(self):
        keys, self.done_keys = self.done_keys, []
        backend = self.env.get("sibling.backend")
        if keys and backend is not None:
            self._to_backend(backend, UpdatesDone(self.name, tuple(keys)))

    def _publish(self, action: Publish):
        bus = self.env.get("eventbus")
        if bus is None:
            self.outbox.refuse("no_eventbus")
            self.metrics.inc("tgfleet_bot_actions_total", bot=self.name, action="publish",
                             result="dropped")
            self._log_limited("no_eventbus", f"bot {self.name}: no event bus: dropped an "
                                             f"event for topic {action.topic!r}")
            return
        self.send(bus, PublishEvent(action.topic, dict(action.payload), self.name))
        self.outbox.count_published()
        self.metrics.inc("tgfleet_bot_actions_total", bot=self.name, action="publish",
                         result="ok")

    def _log_limited(self, reason: str, text: str):
        """Log the first occurrence, then at most one line per DROP_LOG_EVERY_S per reason with
        how many more happened: a flood of drops must not become a flood of log lines."""
        now = time.monotonic()
        entry = self.drop_log.get(reason)
        if entry is None or now - entry[0] >= DROP_LOG_EVERY_S:
            more = f" (+{entry[1]} more since the last report)" if entry and entry[1] else ""
            self.log.warning("%s%s", text, more)
            self.drop_log[reason] = [now, 0]
        else:
            entry[1] += 1

    # ---- grants and sending ----------------------------------------------------------------
    def pump(self):
        """Ask for (or, without a limiter, take) permission to send what is queued."""
        ob = self.outbox
        backend = self.env.get("sibling.backend")
        if not ob.queued or self._stopped or backend is None or self.connected is False:
            return
        room = ob.room()
        if room <= 0:
            return   # results will free room and call pump again
        limiter = self.env.get("ratelimit")
        if limiter is None:
            items = []
            for chat, n in ob.wants(room).items():
                items.extend(ob.take(chat, n))
            self._launch(items)
            return
        if self.lease.tokens:
            items = self.lease.spend(ob, self.chat_kinds, room)
            if items:
                self.c["lease_sends"] += len(items)
                self._launch(items)
                room = ob.room()
                if not ob.queued or room <= 0:
                    return
        if self.grant_pending:
            return
        if self.grant_wait:
            if all(chat in self.asked_chats for chat in ob.queues):
                return   # nothing new: the "grant" timer will ask
            self.cancel_timer("grant")   # a new chat need not wait for another chat's limit
            self.grant_wait = False
        self._ask_limiter(limiter, ob.wants(room))

    def _renew_lease(self):
        """After results, with nothing queued: ask for a fresh lease now when this one is
        nearly spent or half over, so that the next message goes out on a lease instead of
        waiting for a grant. Why: a lease lasts `lease_s` (2 s), so at 1 msg/s per bot about
        one message in three found it over and waited for the limiter's round trip (in-process:
        0.51 against 0.32 ms from the update to the send at p50, 1.49 against 0.82 at p99).
        Here the round trip happens after an answer is out, off any message's path."""
        if self.grant_pending or self.grant_wait or self.outbox.queued or self._stopped \
                or self.connected is False or not self.lease.wants_renewal():
            return
        limiter = self.env.get("ratelimit")
        if limiter is not None:
            self.c["lease_renewals"] += 1
            self._ask_limiter(limiter, {})

    def _ask_limiter(self, limiter, wants: dict):
        """GrantRequest for WANTS (chat -> sends), with the lease's settlement and a new lease
        asked for."""
        self.asked_chats = frozenset(wants)
        kinds = self.chat_kinds
        used, returned = self.lease.settle()
        self.send(limiter, GrantRequest(
            self.name, tuple((chat, kinds.get(chat, ""), n) for chat, n in wants.items()),
            self.cfg["account_kind"], used, returned, LEASE_ASK))
        self.c["grant_requests"] += 1
        self.grant_pending = True
        self.grant_sent_at = time.monotonic()
        if not self.grant_timer:   # armed once and re-armed on fire, not once per request
            self.grant_timer = True
            self.after("grant_timeout", self.cfg["grant_timeout_s"])

    def on_Grant(self, msg: Grant, sender):
        self.grant_pending = False
        self.c["grants"] += 1
        self.lease.granted(msg.lease, msg.lease_s, msg.quiet_s)
        items = []
        for chat_id, _kind, n in msg.allowed:
            items.extend(self.outbox.take(chat_id, n))
        self._launch(items)
        if not self.outbox.queued:
            return
        if msg.retry_in > 0 or not items:
            self.grant_wait = True
            self.after("grant", msg.retry_in if msg.retry_in > 0 else 0.05)
        else:
            self.pump()

    def _launch(self, items: list):
        if not items:
            return
        for item in items:
            self.lease.sent(item.chat)
        backend = self.env.get("sibling.backend")
        self._to_backend(backend, ActionBatch(self.name, self.outbox.launch(items)))
        self.c["batches"] += 1
        if not self.armed("flight"):
            # Looks for actions without a result while any is in flight, and only then: an
            # idle bot has no timer of its own to serve (see MetricsBuffer.tick for why).
            self.every("flight", min(5.0, self.cfg["result_timeout_s"] / 2))

    # ---- results -------------------------------------------------------------------------
    def on_ActionResults(self, msg: ActionResults, sender):
        self._results(msg.results)

    def _results(self, results, synthetic: bool = False):
        """Outcomes of attempts. Metrics split with the backend (both report into the same
        families and the exporter sums sources): the backend counts every attempt it answered
        (tgfleet_bot_actions_total ok/error/flood_wait/timeout, e2e latency); the bot counts
        what only it knows: final drops, refusals, its own timeouts (`synthetic`), retries."""
        floods: dict[int, float] = {}
        ob = self.outbox
        for res in results:
            outcome, item, why = ob.complete(res)
            if item is not None and outcome in ("ok", "drop"):
                self._key_done(item.key)
            if item is None or outcome == "ok":
                continue
            label = action_label(item.action)
            kind = res.error_kind
            if synthetic:
                self.metrics.inc("tgfleet_bot_actions_total", bot=self.name, action=label,
                                 result="timeout")
            if kind == "flood_wait":
                floods[item.chat] = max(floods.get(item.chat, 0.0), float(res.flood_wait_s))
                self.lease.flood_wait(item.chat, float(res.flood_wait_s))
            if outcome == "retry":
                self.metrics.inc("tgfleet_retries_total", bot=self.name)
            else:
                self.metrics.inc("tgfleet_bot_actions_total", bot=self.name, action=label,
                                 result="dropped")
                self.log.warning("bot %s: dropped %s to chat %s after %d attempt(s): %s (%s: %s)",
                                 self.name, label, item.chat, item.attempts, why, kind,
                                 res.error or "no detail")
        limiter = self.env.get("ratelimit")
        if limiter is not None:
            # the real backend reports too; the limiter counts a repeated report once
            for chat, seconds in floods.items():
                self.send(limiter, FloodWaitReport(self.name, chat, self.chat_kinds.get(chat, ""),
                                                   seconds))
        self._arm_retry()
        self.pump()
        self._renew_lease()

    def _arm_retry(self):
        due = self.outbox.next_retry_at()
        if due is None:
            if self.retry_due is not None:
                self.cancel_timer("retry")
                self.retry_due = None
            return
        if self.retry_due is None or due < self.retry_due:
            self.retry_due = due
            self.after("retry", max(0.0, due - time.monotonic()))

    # ---- timers and state ------------------------------------------------------------------
    def on_timer(self, name):
        if name == "lane_flush":
            lanes.flush_or_retry(self, self.lane, self._close_lane)
        elif name == "updates_done":
            self._send_updates_done()
            if self.record_keys:
                self.record_dedup_keys()   # waits for the record in flight, if any
        elif name == "tick":
            self._accept(self.pipeline.tick())
            if not self.pipeline.needs_tick():
                self.cancel_timer("tick")
        elif name == "grant":
            self.grant_wait = False
            self.pump()
        elif name == "grant_timeout":
            self.grant_timer = False
            if not self.grant_pending:
                return
            left = self.grant_sent_at + self.cfg["grant_timeout_s"] - time.monotonic()
            if left > 0:
                self.grant_timer = True
                self.after("grant_timeout", left)
            else:
                self.grant_pending = False
                self.c["grant_timeouts"] += 1
                self._log_limited("grant_timeout", f"bot {self.name}: the rate limiter "
                                                   f"did not answer in time: asking again")
                self.pump()
        elif name == "retry":
            self.retry_due = None
            self.outbox.requeue_due(time.monotonic())
            self._arm_retry()
            self.pump()
        elif name == "dedup_record":
            self.record_dedup_keys()
        elif name == "dedup_resend":
            self.resend_dedup_keys(DEDUP_RESEND_S)
            if self.unconfirmed and not self._stopped:
                self.after_unless_armed("dedup_resend", DEDUP_RESEND_S)
        elif name == "dedup":
            self.dedup_due = None
            now = time.monotonic()
            if self.warm_state == "loading" and now >= self.warm_deadline:
                self.warm_state = "partial"
                self.c["store_dedup_fallbacks"] += 1
                self.store_breaker.record_failure()
                self._log_limited("store_fallback", f"bot {self.name}: the store did not send "
                                                    f"the recent dedup keys in time: old "
                                                    f"updates are checked one batch at a time")
                self._release_warm_waiters()
                return
            for entry in self.pending:
                if entry.resolved or entry.deadline > now:
                    break
                self._fallback(entry, "no answer in time")
            self._drain()
        elif name == "flight":
            overdue = self.outbox.overdue(time.monotonic(), self.cfg["result_timeout_s"])
            if overdue:
                self._results([ActionResult(aid, False, "timeout", "no result from the backend")
                               for aid in overdue], synthetic=True)
            if not self.outbox.in_flight:
                self.cancel_timer("flight")
        elif name == "cleanup":
            stats = self.pipeline.cleanup()
            self.log.info("bot %s: cleanup: %s; queue %s", self.name, stats,
                          self.outbox.counters())
        elif name == "metrics":
            self.flush_metrics(tick=True)

    def on_BackendState(self, msg: BackendState, sender):
        if msg.lane and in_own_process() and msg.lane != self.lane_address:
            self._open_lane(msg.lane, msg.lane_token)
        was = self.connected
        self.connected = bool(msg.connected)
        if msg.self_id:
            self.self_id = msg.self_id
            self.pipeline.ctx.self_id = msg.self_id
        if self.connected and was is not True:
            self.pump()

    # ---- the lane to the backend (processes base) -----------------------------------------
    def _open_lane(self, address: str, token: str):
        self._close_lane()
        try:
            self.lane = lanes.connect(address, token, self.name)
        except lanes.LaneError as exc:
            self.c["lane_errors"] += 1
            self.log.warning("bot %s: no lane to the backend (%s): thespian carries "
                             "everything", self.name, exc)
            return
        self.lane_address = address
        self.watch_fd(self.lane.fd, self._lane_readable)

    def _close_lane(self):
        if self.lane is not None:
            self.unwatch_fd(self.lane.fd)
            self.lane.close()
        self.lane = None
        self.lane_address = ""

    def _lane_readable(self):
        lane = self.lane
        if lane is None:
            return
        backend = self.env.get("sibling.backend")
        for msg in lane.receive():
            if isinstance(msg, UpdateBatch):
                self.on_UpdateBatch(msg, backend)
            elif isinstance(msg, ActionResults):
                self.on_ActionResults(msg, backend)
            else:
                self.log.warning("bot %s: unexpected %s on the lane", self.name,
                                 type(msg).__name__)
            if self._stopped:
                return
        if lane.closed and lane is self.lane:
            self._close_lane()

    def _to_backend(self, backend, msg):
        if lanes.send_via(self, self.lane, msg, backend, self._close_lane):
            self.c["lane_out"] += 1

    def on_env_update(self, msg):
        if msg.key == "eventbus":
            self.subscribe()
        elif msg.key == "ratelimit" and self.grant_pending:
            self.grant_pending = False   # the old limiter will not answer
            self.pump()
        elif msg.key == "metrics":
            self.metrics.schedule(self)
        elif msg.key == "sibling.backend":
            self._close_lane()     # the new backend offers its own lane in its BackendState
            self.send(msg.address, AttachBot(self.name))
        elif msg.key == "store":
            self.resend_dedup_keys(0.0)   # the old store may never have written them

    # ---- observation -------------------------------------------------------------------------
    def counters(self) -> dict:
        p = self.pipeline
        out = self.outbox.counters()
        c = self.c
        out.update({
            "updates": c["updates"], "ignored_updates": c["ignored_updates"],
            "processed": p.updates, "dedup_hits": p.dedup_hits + c["store_dedup_hits"],
            "store_dedup_hits": c["store_dedup_hits"],
            "store_dedup_fallbacks": c["store_dedup_fallbacks"],
            "store_dedup_errors": c["store_dedup_errors"],
            "store_dedup_skipped": c["store_dedup_skipped"],
            "store_late_replies": c["store_late_replies"],
            "dedup_keys_loaded": c["dedup_keys_loaded"], "dedup_warm": self.warm_state,
            "dedup_records_in_flight": len(self.unconfirmed),
            "dedup_keys_waiting": len(self.record_keys), "ticking": self.armed("tick"),
            "watching_flight": self.armed("flight"),
            "store_breaker": self.store_breaker.state,
            "handler_errors": dict(p.handler_errors), "actions": dict(p.actions),
            "events_in": c["events_in"], "grant_requests": c["grant_requests"],
            "grants": c["grants"], "grant_timeouts": c["grant_timeouts"],
            "lease_sends": c["lease_sends"], "lease_tokens": self.lease.tokens,
            "lease_renewals": c["lease_renewals"],
            "batches": c["batches"], "pending_batches": len(self.pending),
            "lane": self.lane is not None, "lane_out": c["lane_out"],
            "lane_errors": c["lane_errors"],
            "connected": self.connected, "self_id": self.self_id,
            "handlers": p.stats()["handlers"],
        })
        return out

    def on_BotStatsRequest(self, msg: BotStatsRequest, sender):
        self.send(sender, BotStats(msg.request_id, self.name, self.counters()))

    def flush_metrics(self, tick: bool = False):
        """The gauges read off the bot's state, then a report: paced by the report timer when
        TICK (MetricsBuffer.tick), else at once if anything changed (on stop)."""
        m, bot, p = self.metrics, self.name, self.pipeline
        # every failure counter exists from the start (0), so dashboards show 0, not "no data"
        for h in p.handlers:
            m.set("tgfleet_bot_handler_errors_total", p.handler_errors.get(h.name, 0), bot=bot,
                  handler=h.name)
        for h, n in p.handler_errors.items():
            m.set("tgfleet_bot_handler_errors_total", n, bot=bot, handler=h)
        m.inc("tgfleet_bot_queue_drops_total", 0, bot=bot)
        m.inc("tgfleet_retries_total", 0, bot=bot)
        m.set("tgfleet_bot_dedup_hits_total", p.dedup_hits + self.c["store_dedup_hits"], bot=bot)
        m.set("tgfleet_bot_queue_depth", self.outbox.queued, bot=bot)
        if self.last_update_at is not None:
            m.set("tgfleet_bot_last_update_age_seconds",
                  time.monotonic() - self.last_update_at, bot=bot)
        if tick:
            m.tick(self)
        else:
            m.flush(self)
        ob = self.outbox
        self.report_info(f"queue={ob.queued} retries={ob.retries} "
                         f"dropped={sum(ob.dropped.values())} store={self.store_breaker.state}"
                         f" lane={'yes' if self.lane is not None else 'no'}")

    def on_stop(self):
        if not hasattr(self, "outbox"):
            return   # failed before it was set up: nothing to release
        bus = self.env.get("eventbus")
        if bus is not None:
            self.send(bus, UnsubscribeAll(self.name))
        self.record_dedup_keys()
        # Actions dropped here are counted drops, so their updates are finished; updates not
        # handled yet stay unacknowledged and go to the next bot.
        self.done_keys.extend(self.key_waits)
        self.key_waits.clear()
        self._send_updates_done()
        self._close_lane()
        lost = self.outbox.drop_all()
        if lost:
            self.log.warning("bot %s stopping: dropped %s", self.name, dict(lost))
        self.log.info("bot %s stopped: %s", self.name, self.outbox.counters())
        if "metrics" in self.env:
            self.flush_metrics()
