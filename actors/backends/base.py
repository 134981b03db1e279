"""BackendActor: the one owner of one Telegram account session (Telethon, Pyrogram or TDLib).

Why one actor per session: exactly one live client may ever use a session (two owners give
"database is locked" and AUTH_KEY_DUPLICATED), and a supervisor can only restart what it owns.
Why that is NOT one request at a time: a client keeps many requests in flight (Telethon packs
concurrent requests into one container); a lock around every call caps an account at about
1 / round-trip. So an `ActionBatch` is executed concurrently inside the one client, up to
`max_in_flight` at once, and nothing here serializes calls.

Threads: the library runs in a background thread (an asyncio `LoopThread` for Telethon and
Pyrogram, TDLib's receive thread for TDLib). Whatever it produces (updates, results, login
steps, health answers) is pushed as a tuple into an `EventSink`; the sink wakes the actor once
per burst through the bridge, and the actor handles all pending events in one turn. So updates
that arrive close together leave as ONE `UpdateBatch`, results as one `ActionResults`.

Lifecycle (`on_start`): load the stored session (`SessionGet` from env['store'], else a file
under data_dir) -> connect -> authorize (bot token; a user without a valid session gets a code
sent and waits in `awaiting_code`, reachable through `ProvideLoginCode`) -> save the session ->
report `Started`. Failures crash the actor with a clear message ("bot token revoked/invalid: ..."),
and the supervisor decides what happens next.

Policy for a corrupted stored session (bytes that do not decode): it is logged and reported in
`LoginStatus.error` / `BackendStats`, then ignored: a bot logs in again with its token, a user
account waits for a new login code. The next save overwrites the bad bytes.

Flood waits are never slept on (the libraries are configured to raise): the action fails with
error_kind='flood_wait' and a `FloodWaitReport` goes to env['ratelimit'], which decides.
Errors map to error_kind: flood_wait | network | timeout (retryable) | rpc_fatal | peer_invalid.
A circuit breaker around the client fails actions fast (error_kind='network') after repeated
network failures, while reconnect attempts run with exponential backoff and jitter.

Health: `on_probe` is answered only after the library thread answered, so a hung loop shows as a
missed probe; a cheap real request every `health_interval_s` measures liveness; a session that
is connected but got no update and no successful request for `stall_after_s` is declared stalled
and the actor crashes so its supervisor restarts it (Pyrogram #916: silent stalls).

Subclasses implement the `engine_*` hooks; `AsyncioBackend` implements them on a LoopThread in
terms of the `lib_*` coroutines Telethon and Pyrogram provide.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import os
import threading
import time
from dataclasses import dataclass, field

from actors.base import FleetActor
from messages import codec
from messages.backend import (ActionBatch, ActionResult, ActionResults, AttachBot, BackendState,
                              FloodWaitReport, LoginStatus, UpdatesDone)
from messages.lifecycle import ProbeReply
from messages.store import SessionGet, SessionPut
from messages.telegram import (DeleteMessages, EditText, ForwardMessages, SendMedia, SendText,
                               UpdateBatch, action_chat, update_key)
from system.backoff import Backoff
from system import inline
from system import lane as lanes
from system import resume
from system.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from system.loopthread import LoopThread
from system.metrics_client import MetricsBuffer
from system import placement
from system.procguard import in_own_process
from system.sessionlock import SessionLock

LIBRARIES = ("telethon", "pyrogram", "tdlib")
ACCOUNT_KINDS = ("bot", "user")
TELEGRAM_ACTIONS = (SendText, SendMedia, ForwardMessages, EditText, DeleteMessages)
# `action` label values of tgfleet_bot_actions_total (a fixed set, see system/metricdefs.py).
ACTION_LABELS = {"SendText": "send_message", "SendMedia": "send_media",
                 "ForwardMessages": "forward", "EditText": "edit_message",
                 "DeleteMessages": "delete"}
# RPC errors that mean "this chat cannot be reached": not retryable, not a library failure.
PEER_ERRORS = frozenset({
    "PEER_ID_INVALID", "CHAT_ID_INVALID", "CHANNEL_INVALID", "CHANNEL_PRIVATE",
    "USER_ID_INVALID", "INPUT_USER_DEACTIVATED", "USER_DEACTIVATED", "USER_IS_BLOCKED",
    "CHAT_WRITE_FORBIDDEN", "USER_BANNED_IN_CHANNEL", "CHAT_ADMIN_REQUIRED",
    "USER_NOT_PARTICIPANT", "CHAT_FORBIDDEN", "CHAT_RESTRICTED", "PEER_ID_NOT_SUPPORTED"})
CIRCUIT_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

DEFAULTS = {
    "max_in_flight": 64,
    "lanes": True,                 # bot <-> backend over a direct stream (own processes only)
    "health_interval_s": 15.0,
    "stall_after_s": 120.0,
    "session_in_store": True,
    "session_save_s": 60.0,        # periodic save of the update state (pts) while running
    "action_timeout_s": 60.0,      # one action may not hang longer than this
    "max_buffered_updates": 10_000,  # kept until a bot attaches; older ones are dropped
    "batch_max": 500,              # updates / results per message to the bot
    # Reading from Telegram pauses while the library holds more than `high` undispatched
    # updates, until it is down to `low` (actors/backends/readgate.py).
    "update_backlog_high": 128,
    "update_backlog_low": 32,
    # Telethon: an eligible new message goes to the actors from the receive loop, ahead of
    # Telethon's update bookkeeping (actors/backends/telethon_fastpath.py).
    "fast_updates": True,
    "breaker_threshold": 5,        # consecutive network failures that open the circuit
    "breaker_reset_s": 5.0,        # open -> half-open after this long
    "reconnect_base_s": 0.5,
    "reconnect_max_s": 60.0,
    "store_timeout_s": 10.0,
    "stop_timeout_s": 5.0,
    # actors/bot.py also reports flood waits and counts actions / e2e latency from the same
    # ActionResults: switch these off in a tree where the bot does it, or both count.
    "report_flood_waits": True,    # FloodWaitReport to env['ratelimit']
    "action_metrics": True,        # tgfleet_bot_actions_total, _flood_waits_total, _e2e_latency
}


# ---- messages of this module --------------------------------------------------------------
# They belong in messages/backend.py; defined here because that file is not this module's to
# change. Importable under this path in every process, as thespian requires.

@dataclass(frozen=True, slots=True)
class BackendStatsRequest:
    """Anyone -> backend: report counters (tests, ctl)."""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class BackendStats:
    request_id: str
    stats: dict = field(default_factory=dict)


class LoginFailed(RuntimeError):
    """The account cannot be authorized (revoked token, refused phone, ...): crash clearly."""


class SessionCorrupted(ValueError):
    """Stored session bytes that do not decode."""


class Stalled(RuntimeError):
    """Connected, but nothing has come through for too long."""


# ---- helpers ------------------------------------------------------------------------------

def chat_kind_of(chat_id: int) -> str:
    """Best guess from a marked id alone: users > 0, channels/supergroups -100..., groups < 0."""
    if chat_id > 0:
        return "private"
    if chat_id <= -1_000_000_000_000:
        return "channel"
    return "group"


def encode_session(library: str, body: dict) -> bytes:
    """A library's session state as bytes for the store: a versioned msgpack envelope."""
    return codec.encode(body, f"session.{library}")


def decode_session(library: str, blob) -> dict | None:
    if blob is None:
        return None
    try:
        _, body = codec.decode(bytes(blob), kind=f"session.{library}")
    except (codec.CodecError, TypeError, ValueError) as exc:
        raise SessionCorrupted(f"corrupted session: {exc}") from exc
    if not isinstance(body, dict):
        raise SessionCorrupted("corrupted session: body is not a map")
    return body


def backend_config(args: dict, library: str) -> dict:
    """Start.args checked and completed with defaults; ValueError with a clear text if bad."""
    cfg = dict(DEFAULTS)
    cfg.update(args or {})
    name = cfg.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"backend: 'name' must be a non-empty str, got {name!r}")
    lib = cfg.get("library", library)
    if lib != library:
        raise ValueError(f"backend {name}: library {lib!r} given to the {library} backend")
    cfg["library"] = library
    kind = cfg.get("account_kind", "bot")
    if kind not in ACCOUNT_KINDS:
        raise ValueError(f"backend {name}: account_kind must be one of {ACCOUNT_KINDS}, "
                         f"got {kind!r}")
    cfg["account_kind"] = kind
    if kind == "bot" and not (isinstance(cfg.get("token"), str) and cfg["token"]):
        raise ValueError(f"backend {name}: a bot account needs 'token'")
    if kind == "user" and not (isinstance(cfg.get("phone"), str) and cfg["phone"]):
        raise ValueError(f"backend {name}: a user account needs 'phone'")
    try:
        cfg["api_id"] = int(cfg.get("api_id"))
    except (TypeError, ValueError):
        raise ValueError(f"backend {name}: 'api_id' must be an int, got "
                         f"{cfg.get('api_id')!r}") from None
    if cfg["api_id"] <= 0 or not (isinstance(cfg.get("api_hash"), str) and cfg["api_hash"]):
        raise ValueError(f"backend {name}: 'api_id' (> 0) and 'api_hash' are required")
    server = cfg.get("server")
    if server is not None:
        if not isinstance(server, dict) or not server.get("host") or not server.get("port"):
            raise ValueError(f"backend {name}: 'server' must be {{host, port[, "
                             f"rsa_public_key]}}, got {server!r}")
        cfg["server"] = dict(server, port=int(server["port"]))
    for key in ("max_in_flight", "max_buffered_updates", "batch_max", "breaker_threshold",
                "update_backlog_high"):
        cfg[key] = int(cfg[key])
        if cfg[key] < 1:
            raise ValueError(f"backend {name}: {key} must be >= 1")
    cfg["update_backlog_low"] = int(cfg["update_backlog_low"])
    if not 0 <= cfg["update_backlog_low"] < cfg["update_backlog_high"]:
        raise ValueError(f"backend {name}: update_backlog_low must be >= 0 and below "
                         f"update_backlog_high ({cfg['update_backlog_high']})")
    for key in ("health_interval_s", "stall_after_s", "session_save_s", "action_timeout_s",
                "breaker_reset_s", "reconnect_base_s", "reconnect_max_s", "store_timeout_s",
                "stop_timeout_s"):
        cfg[key] = float(cfg[key])
        if not cfg[key] > 0:
            raise ValueError(f"backend {name}: {key} must be > 0")
    for key in ("session_in_store", "report_flood_waits", "action_metrics", "fast_updates"):
        cfg[key] = bool(cfg[key])
    return cfg


def describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:400]


class EventSink:
    """Library threads push event tuples; the actor takes them all at once.

    The first push after a `take()` arms one wake-up: `defer(wake)` when a deferral is set (the
    asyncio loop's call_soon: the wake then runs on the loop's NEXT iteration, so every update
    handled in this iteration shares one batch), else a wake at once. A push `at_once` wakes at
    once even so: its caller knows no other event will join the batch (`push_update`).
    """

    def __init__(self, bridge, defer=None):
        self._bridge = bridge
        self.defer = defer
        self._events: list = []
        self._lock = threading.Lock()
        self._armed = False

    def push(self, event: tuple, at_once: bool = False) -> None:
        with self._lock:
            self._events.append(event)
            if self._armed:
                return
            self._armed = True
        defer = self.defer
        if defer is None or at_once:
            self._wake()
            return
        try:
            defer(self._wake)
        except RuntimeError:       # the loop is closed: wake directly (the actor is stopping)
            self._wake()

    def _wake(self) -> None:
        # Deferred to the loop (asyncio libraries): the loop thread may deliver the batch to
        # the actors itself when the in-process runner is idle (system/inline.py).
        self._bridge.post(("sink",), hot=self.defer is not None)

    def take(self) -> list:
        with self._lock:
            events, self._events = self._events, []
            self._armed = False
        return events


# ---- the actor ------------------------------------------------------------------------------

class BackendActor(FleetActor):
    kind = "backend"
    start_async = True
    library = ""
    # False for TDLib: it keeps its authorization in its own database directory.
    uses_session_blob = True

    # ---- start ------------------------------------------------------------------------------
    def on_start(self, args):
        """Runs in the actor on `Start`: checks the arguments, then loads the session; connect
        and login continue in the library thread, `Started` follows from `on_bridge`."""
        self.cfg = cfg = backend_config(args, self.library)
        self.name = cfg["name"]
        self.session_lock = None      # system/sessionlock.py; set below on the processes base
        if cfg.get("host"):
            # Placed on a member host: its files (a TDLib database) live under that host's own
            # data directory, not under the path the leader would use on its disk.
            cfg["data_dir"] = placement.local_data_dir(os.path.join("sessions", self.name),
                                                       cfg.get("data_dir"))
        self.metrics = MetricsBuffer(self.path or self.name)
        self.metrics.inc("tgfleet_backend_reconnects_total", 0, bot=self.name)   # 0, not absent
        self.breaker = CircuitBreaker(cfg["breaker_threshold"], cfg["breaker_reset_s"])
        self.reconnect_backoff = Backoff(base_s=cfg["reconnect_base_s"],
                                         max_s=cfg["reconnect_max_s"], jitter=0.3,
                                         reset_after_s=cfg["reconnect_max_s"])
        self.login_state = "connecting"
        self.login_error = ""
        self.session_error = ""
        self.connected = False
        self.authorized = False
        self.self_id = 0
        self.start_reported = False
        self.bot_addr = None
        self.bot_name = ""
        self.buffered: collections.deque = collections.deque()
        # Updates sent to the bot that it has not reported finished (`UpdatesDone`), by key, in
        # order: if the bot dies they go to its successor first.
        self.unacked: collections.OrderedDict = collections.OrderedDict()
        # How many updates this actor has taken from the library thread, and (touched by that
        # thread only) what it pushed: a saved session never resumes past a held update.
        self.updates_seen = 0
        self.in_transit = resume.InTransit(lambda: self.updates_seen)
        self.queue: collections.deque = collections.deque()
        self.in_flight: dict[int, tuple] = {}   # seq -> (action_id, action, reply_to, bot)
        self.seqs = itertools.count(1)
        self.rids = itertools.count(1)
        self.store_pending: dict[str, tuple] = {}
        self.chat_kinds: collections.OrderedDict = collections.OrderedDict()
        self.last_activity = time.monotonic()
        self.health_inflight = False
        self.reconnect_inflight = False
        self.reconnect_scheduled = False
        self.signin_inflight = False
        self.last_saved: bytes | None = None
        self.last_state_sent = None
        self._out_updates: list = []
        self._out_results: list = []
        self.counters = collections.Counter()
        self.engine_started = False
        # A lane to the bot when it runs in another process (system/lane.py): UpdateBatch and
        # ActionResults out, ActionBatch in, without thespian's per-message cost.
        self.lane_listener = None
        self.bot_lane = None
        if cfg["lanes"] and in_own_process():
            try:
                self.lane_listener = lanes.LaneListener()
                self.watch_fd(self.lane_listener.fd, self._lane_accept)
            except OSError as exc:
                self.log.warning("%s: no lane to the bot (%s): thespian carries everything",
                                 self.path, exc)
        self.open_bridge()
        self.sink = EventSink(self.bridge)
        if cfg.get("server") and cfg["server"].get("rsa_public_key"):
            from system.localtg.clients import register_rsa_key
            if self.library in ("telethon", "pyrogram"):
                register_rsa_key(cfg["server"]["rsa_public_key"], (self.library,))
        if "metrics" in self.env:
            self.metrics.schedule(self)
        if in_own_process() and cfg.get("data_dir"):
            self.session_lock = SessionLock(cfg["data_dir"])
        self._open_when_owned()

    def _open_when_owned(self):
        """Open the session once no other backend process on this host holds it
        (system/sessionlock.py); until then say who does, and look again every 0.5 s."""
        holder = self.session_lock.acquire() if self.session_lock is not None else None
        if holder is not None:
            if not self.armed("session_lock"):
                self.log.warning("%s: the session is still held by pid %s (an older backend of "
                                 "this bot, e.g. on a member host whose leader lost track of "
                                 "it); waiting for it to end", self.path, holder or "?")
                self.every("session_lock", 0.5)
            self.login_state = f"waiting: session held by pid {holder or '?'}"
            self.report_info(self.login_state)
            return
        self.cancel_timer("session_lock")
        self.login_state = "connecting"
        self._load_session()

    @property
    def session_account(self) -> str:
        """Key of this session in the store: per library, so one never reads another's."""
        return f"{self.name}.{self.library}"

    @property
    def session_file(self) -> str | None:
        data_dir = self.cfg.get("data_dir")
        return os.path.join(data_dir, f"{self.name}.{self.library}.session") if data_dir \
            else None

    def _use_store(self) -> bool:
        return self.cfg["session_in_store"] and self.env.get("store") is not None

    def _load_session(self):
        if not self.uses_session_blob:
            self._open(None)
        elif self._use_store():
            rid = f"session-get-{next(self.rids)}"
            self.store_pending[rid] = ("get", None)
            self.send(self.env["store"], SessionGet(rid, self.session_account))
            self.after("store_timeout", self.cfg["store_timeout_s"])
        else:
            blob = None
            path = self.session_file
            if path and os.path.exists(path):
                with open(path, "rb") as fh:
                    blob = fh.read()
            self._open(blob)

    def _open(self, blob):
        body = None
        try:
            body = decode_session(self.library, blob) if self.uses_session_blob else None
        except SessionCorrupted as exc:
            self.session_error = str(exc)
            self.counters["corrupted_sessions"] += 1
            self.log.error("%s: %s; starting a fresh login (%s)", self.path, exc,
                           "bot token" if self.cfg["account_kind"] == "bot" else "login code")
        self.engine_started = True
        self.engine_start(body)

    def on_StoreReply(self, msg, sender):
        purpose, arg = self.store_pending.pop(msg.request_id, (None, None))
        if purpose == "get":
            self.cancel_timer("store_timeout")
            if not msg.ok:
                raise RuntimeError(f"cannot load the session from the store: {msg.error}")
            self._open(msg.value)
        elif purpose == "put":
            if not msg.ok:
                self.log.warning("%s: session not saved: %s", self.path, msg.error)
            if arg == "start":
                self.cancel_timer("store_timeout")
                self._report_started_once()

    def _report_started_once(self):
        if not self.start_reported:
            self.start_reported = True
            self.report_started()
            self.every("health", self.cfg["health_interval_s"])
            if self.uses_session_blob:
                self.every("session", self.cfg["session_save_s"])

    # ---- events from the library thread -------------------------------------------------
    def on_bridge(self, item):
        if item != ("sink",):
            self.log.warning("%s: unexpected bridge item %r", self.path, item)
            return
        for event in self.sink.take():
            handler = getattr(self, "_ev_" + event[0], None)
            if handler is None:
                self.log.warning("%s: unknown engine event %r", self.path, event[0])
                continue
            handler(*event[1:])
        self._flush_out()
        self._dispatch_queue()
        self._flush_out()

    def _ev_opened(self, info: dict):
        self.connected = bool(info.get("connected", True))
        if info.get("state") == "ready":
            self._became_ready(int(info.get("self_id") or 0))
        else:
            self.login_state = "awaiting_code"
            self.login_error = self.session_error
            self.log.warning("%s: %s needs a login code (ProvideLoginCode)", self.path,
                             self.cfg.get("phone"))
            self._report_started_once()
            self._publish_state()

    def _ev_open_failed(self, exc):
        if isinstance(exc, LoginFailed):
            raise exc
        raise LoginFailed(f"connect/login failed: {describe(exc)}") from exc

    def _became_ready(self, self_id: int):
        was_ready = self.login_state == "ready"
        self.login_state = "ready"
        self.authorized = True
        self.self_id = self_id or self.self_id
        self.last_activity = time.monotonic()
        self._publish_state()
        if not was_ready and self.uses_session_blob:
            self.engine_export("start" if not self.start_reported else "login")
        elif not self.start_reported:
            self._report_started_once()

    def _ev_signed_in(self, request_id, sender, info):
        self.signin_inflight = False
        self.login_error = ""
        self._became_ready(int(info.get("self_id") or 0))
        self.send(sender, LoginStatus(request_id, "ready", self.cfg.get("phone", "")))

    def _ev_sign_in_failed(self, request_id, sender, exc):
        self.signin_inflight = False
        self.login_error = describe(exc) if isinstance(exc, BaseException) else str(exc)
        self.send(sender, LoginStatus(request_id, self.login_state, self.cfg.get("phone", ""),
                                      self.login_error))

    def _ev_update(self, message):
        self.updates_seen += 1
        self.last_activity = time.monotonic()
        self.counters["updates"] += 1
        self.chat_kinds[message.chat_id] = message.chat_kind
        if len(self.chat_kinds) > 10_000:
            self.chat_kinds.popitem(last=False)
        self._out_updates.append(message)

    def _ev_result(self, seq, result: ActionResult):
        entry = self.in_flight.pop(seq, None)
        if entry is None:
            return
        action_id, action, reply_to, bot = entry
        self._account_result(action, result)
        self._out_results.append((reply_to, bot, result))

    def _ev_health(self, ok, detail, connected):
        self.health_inflight = False
        self._set_connected(connected)
        if ok:
            self.counters["health_ok"] += 1
            self.last_activity = time.monotonic()
            self.breaker.record_success()
        else:
            self.counters["health_failed"] += 1
            self.breaker.record_failure()
            self.log.warning("%s: health request failed: %s", self.path, detail)
        self._maybe_reconnect()

    def _ev_conn(self, connected):
        self._set_connected(connected)

    def _ev_reconnected(self):
        """The library reconnected by itself (and caught up through GetDifference)."""
        self.counters["reconnects"] += 1
        self.metrics.inc("tgfleet_backend_reconnects_total", bot=self.name)
        self._set_connected(True)

    def _ev_reconnect_done(self, ok, detail):
        self.reconnect_inflight = False
        if ok:
            self.breaker.record_success()
            self.reconnect_backoff.attempt = 0
            self.counters["reconnects"] += 1
            self.metrics.inc("tgfleet_backend_reconnects_total", bot=self.name)
            self.last_activity = time.monotonic()
            self._set_connected(True)
        else:
            self.breaker.record_failure()
            self.log.warning("%s: reconnect failed: %s", self.path, detail)
            self._maybe_reconnect()

    def _ev_session(self, purpose, blob):
        if blob is None:
            if purpose == "start":
                self._report_started_once()
            return
        self._persist(blob, purpose)

    def _ev_session_failed(self, purpose, exc):
        self.log.warning("%s: could not export the session: %s", self.path, describe(exc))
        if purpose == "start":
            self._report_started_once()

    def _ev_probe(self, seq, sender):
        self.send(sender, ProbeReply(self.child_id, seq, True))

    def _ev_auth_lost(self, detail):
        raise LoginFailed(f"session no longer authorized: {detail}")

    def _ev_fatal(self, detail):
        raise RuntimeError(detail)

    # ---- state ----------------------------------------------------------------------------
    def _set_connected(self, connected):
        connected = bool(connected)
        if connected != self.connected:
            self.connected = connected
            self.log.info("%s: %s", self.path, "connected" if connected else "disconnected")
            self._publish_state()

    def _publish_state(self, force: bool = False):
        ll = self.lane_listener
        state = BackendState(self.bot_name or self.name, self.connected, self.authorized,
                             self.login_state, self.self_id, self.library,
                             ll.address if ll else "", ll.token if ll else "")
        if self.bot_addr is not None and (force or state != self.last_state_sent):
            self.send(self.bot_addr, state)
        self.last_state_sent = state if self.bot_addr is not None else self.last_state_sent

    def on_DetachBot(self, msg, sender):
        """The bot died: buffer its updates until its successor attaches (none are lost), the
        ones it had not finished first."""
        if self.bot_addr is not None and self.bot_addr == msg.address:
            self.bot_addr = None
            self._drop_bot_lane()
            self._requeue_unfinished()

    def on_UpdatesDone(self, msg: UpdatesDone, sender):
        pop = self.unacked.pop
        for key in msg.keys:
            pop(key, None)

    def _track_unfinished(self, updates) -> None:
        unacked = self.unacked
        for update in updates:
            unacked[update_key(update)] = update
        if len(unacked) > self.cfg["max_buffered_updates"]:
            # A bot this far behind still has them; only a redelivery after its death is lost.
            for _ in range(len(unacked) - self.cfg["max_buffered_updates"]):
                unacked.popitem(last=False)
                self.counters["unfinished_forgotten"] += 1

    def _requeue_unfinished(self) -> None:
        """What the departed bot had not finished goes to the next one first, in order; that
        bot's dedup (its LRU, loaded from the store) skips what was answered and recorded."""
        if self.unacked:
            self.counters["updates_redelivered"] += len(self.unacked)
            self.buffered.extendleft(reversed(self.unacked.values()))
            self.unacked.clear()

    # ---- the lane to the bot (processes base) -------------------------------------------
    def _lane_accept(self):
        for lane in self.lane_listener.accept():
            self.watch_fd(lane.fd, lambda lane=lane: self._lane_readable(lane))

    def _lane_readable(self, lane):
        if lane.verified is not True:
            try:
                got = self.lane_listener.verify(lane)
            except lanes.LaneError as exc:
                self.unwatch_fd(lane.fd)
                self.counters["lanes_refused"] += 1
                self.log.warning("%s: %s", self.path, exc)
                return
            if got is None:
                return
            name, msgs = got
            if self.bot_lane is not None and self.bot_lane is not lane:
                self._drop_bot_lane()        # a restarted bot replaces its predecessor's
            self.bot_lane = lane
            self.counters["lanes_accepted"] += 1
        else:
            msgs = lane.receive()
        for msg in msgs:
            if isinstance(msg, ActionBatch) and lane is self.bot_lane:
                self.counters["lane_in"] += 1
                self.on_ActionBatch(msg, self.bot_addr)
            elif isinstance(msg, UpdatesDone) and lane is self.bot_lane:
                self.on_UpdatesDone(msg, self.bot_addr)
            else:
                self.log.warning("%s: unexpected %s on the lane", self.path,
                                 type(msg).__name__)
        if lane.closed:
            self.unwatch_fd(lane.fd)
            if lane is self.bot_lane:
                self.bot_lane = None

    def _drop_bot_lane(self):
        if self.bot_lane is not None:
            self.unwatch_fd(self.bot_lane.fd)
            self.bot_lane.close()
            self.bot_lane = None

    def _to_bot(self, msg) -> None:
        """To the attached bot: over the lane when there is one, else through thespian."""
        if lanes.send_via(self, self.bot_lane, msg, self.bot_addr, self._drop_bot_lane):
            self.counters["lane_out"] += 1

    def on_AttachBot(self, msg: AttachBot, sender):
        """The sibling bot: from now on every incoming message goes to it."""
        if self.bot_addr is not None and self.bot_addr != sender:
            self._drop_bot_lane()            # a successor arrived before its predecessor's
            self._requeue_unfinished()       # DetachBot: the same hand-over
        self.bot_addr = sender
        self.bot_name = msg.bot
        self._publish_state(force=True)
        if self.buffered:
            self._out_updates[:0] = list(self.buffered)
            self.buffered.clear()
            self._flush_out()

    # ---- actions --------------------------------------------------------------------------
    def on_ActionBatch(self, msg, sender):
        for item in msg.items:
            action_id, action = item
            self.queue.append((action_id, action, sender, msg.bot))
        self._dispatch_queue()
        self._flush_out()

    def _precheck(self, action) -> tuple | None:
        """(error_kind, text) when the action cannot be handed to the client now."""
        if not isinstance(action, TELEGRAM_ACTIONS):
            return "rpc_fatal", f"{type(action).__name__} is not a Telegram action"
        if self.login_state != "ready":
            return "network", f"not logged in ({self.login_state})"
        if not self.breaker.allow():
            return "network", "circuit open: the connection to Telegram keeps failing"
        return None

    def _dispatch_queue(self):
        jobs = []
        limit = self.cfg["max_in_flight"]
        while self.queue and len(self.in_flight) < limit:
            action_id, action, reply_to, bot = self.queue.popleft()
            refused = self._precheck(action)
            if refused is not None:
                result = ActionResult(action_id, False, refused[0], refused[1])
                self._account_result(action, result, from_client=False)
                self._out_results.append((reply_to, bot, result))
                continue
            seq = next(self.seqs)
            self.in_flight[seq] = (action_id, action, reply_to, bot)
            jobs.append((seq, action_id, action))
        if jobs:
            self.counters["requests"] += len(jobs)
            self.engine_run(jobs)

    def _account_result(self, action, result: ActionResult, from_client: bool = True):
        """Metrics, breaker, rate-limiter report and e2e latency for one finished action;
        `from_client` is False for actions refused before reaching the client."""
        label = ACTION_LABELS.get(type(action).__name__, "other")
        kind = result.error_kind
        if result.ok:
            outcome = "ok"
        elif kind in ("flood_wait", "timeout"):
            outcome = kind
        else:
            outcome = "error"
        self.counters["results_" + (kind or "ok")] += 1
        metrics = self.cfg["action_metrics"]
        if metrics:
            self.metrics.inc("tgfleet_bot_actions_total", bot=self.name, action=label,
                             result=outcome)
        if from_client and kind in ("network", "timeout"):
            self.breaker.record_failure()
            self._maybe_reconnect()
        elif from_client:          # Telegram answered (even with an error): the link works
            self.breaker.record_success()
            self.last_activity = time.monotonic()
        if kind == "flood_wait":
            if metrics:
                self.metrics.inc("tgfleet_flood_waits_total", bot=self.name)
            chat_id = action_chat(action)
            chat_kind = self.chat_kinds.get(chat_id) or \
                (chat_kind_of(chat_id) if chat_id is not None else "")
            limiter = self.env.get("ratelimit")
            if limiter is not None and self.cfg["report_flood_waits"]:
                self.send(limiter, FloodWaitReport(self.name, chat_id, chat_kind,
                                                   float(result.flood_wait_s)))
        if metrics and result.ok and getattr(action, "received_at", 0):
            self.metrics.observe("tgfleet_e2e_latency_seconds",
                                 max(0.0, time.time() - action.received_at), bot=self.name)

    def _flush_out(self):
        batch_max = self.cfg["batch_max"]
        if self._out_updates:
            updates, self._out_updates = self._out_updates, []
            if self.bot_addr is None:
                for update in updates:
                    if len(self.buffered) >= self.cfg["max_buffered_updates"]:
                        self.buffered.popleft()
                        self.counters["updates_dropped"] += 1
                    self.buffered.append(update)
            else:
                self._track_unfinished(updates)
                for i in range(0, len(updates), batch_max):
                    self._to_bot(UpdateBatch(self.bot_name, tuple(updates[i:i + batch_max])))
        if self._out_results:
            results, self._out_results = self._out_results, []
            groups: list = []          # [(address, bot, [results])]; addresses are not hashable
            for reply_to, bot, result in results:
                for group in groups:
                    if group[0] == reply_to and group[1] == bot:
                        group[2].append(result)
                        break
                else:
                    groups.append((reply_to, bot, [result]))
            for reply_to, bot, items in groups:
                to_bot = reply_to == self.bot_addr and self.bot_addr is not None
                for i in range(0, len(items), batch_max):
                    msg = ActionResults(bot, tuple(items[i:i + batch_max]))
                    if to_bot:
                        self._to_bot(msg)
                    else:
                        self.send(reply_to, msg)

    # ---- login through ctl ------------------------------------------------------------------
    def on_ProvideLoginCode(self, msg, sender):
        phone = self.cfg.get("phone", "")
        if self.login_state != "awaiting_code":
            self.send(sender, LoginStatus(msg.request_id, self.login_state, phone,
                                          "not waiting for a login code"))
        elif self.signin_inflight:
            self.send(sender, LoginStatus(msg.request_id, self.login_state, phone,
                                          "a sign-in is already in progress"))
        else:
            self.signin_inflight = True
            self.engine_sign_in(msg.request_id, sender, str(msg.code), msg.password or "")

    def on_LoginStatusRequest(self, msg, sender):
        self.send(sender, LoginStatus(msg.request_id, self.login_state,
                                      self.cfg.get("phone", ""),
                                      self.login_error or self.session_error))

    def on_BackendStatsRequest(self, msg, sender):
        self.send(sender, BackendStats(msg.request_id, self.stats()))

    COUNTERS = ("updates", "updates_dropped", "requests", "health_ok", "health_failed",
                "reconnects", "reconnect_attempts", "stalls", "session_saves",
                "corrupted_sessions", "results_ok", "results_flood_wait", "results_network",
                "results_timeout", "results_rpc_fatal", "results_peer_invalid",
                "updates_redelivered", "unfinished_forgotten")

    def stats(self) -> dict:
        out = {name: 0 for name in self.COUNTERS}
        out.update(self.counters)
        out.update(library=self.library, login_state=self.login_state,
                   connected=self.connected, self_id=self.self_id,
                   in_flight=len(self.in_flight), queued=len(self.queue),
                   buffered=len(self.buffered), unfinished=len(self.unacked),
                   circuit=self.breaker.state,
                   session_error=self.session_error, login_error=self.login_error,
                   pid=os.getpid())
        out.update(self.engine_stats())
        return out

    # ---- session persistence ----------------------------------------------------------------
    def _persist(self, blob: bytes, purpose: str):
        if purpose == "periodic" and blob == self.last_saved:
            return
        self.last_saved = blob
        self.counters["session_saves"] += 1
        if self._use_store():
            rid = f"session-put-{next(self.rids)}"
            self.store_pending[rid] = ("put", purpose)
            self.send(self.env["store"], SessionPut(rid, self.session_account, blob))
            if purpose == "start":
                self.after("store_timeout", self.cfg["store_timeout_s"])
            return
        path = self.session_file
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, path)
        elif purpose == "start":
            self.log.warning("%s: no store and no data_dir: the session is not persisted",
                             self.path)
        if purpose == "start":
            self._report_started_once()

    # ---- timers: health, stall, reconnect, metrics ------------------------------------------
    def on_timer(self, name):
        if name == "lane_flush":
            lanes.flush_or_retry(self, self.bot_lane, self._drop_bot_lane)
        elif name == "health":
            self._check_stall()
            if not self.health_inflight and self.login_state == "ready":
                self.health_inflight = True
                self.engine_health()
        elif name == "reconnect":
            self.reconnect_scheduled = False
            self._try_reconnect()
        elif name == "session":
            if self.login_state == "ready":
                self.engine_export("periodic")
        elif name == "metrics":
            self._report_metrics()
        elif name == "session_lock":
            self._open_when_owned()
        elif name == "store_timeout":
            waiting = [p for p, _ in self.store_pending.values()]
            if "get" in waiting:
                raise RuntimeError(f"the store did not answer SessionGet within "
                                   f"{self.cfg['store_timeout_s']:g}s")
            if not self.start_reported:
                self.log.warning("%s: the store did not confirm the session save; starting "
                                 "anyway", self.path)
                self._report_started_once()
        else:
            self.engine_timer(name)

    def _check_stall(self):
        idle = time.monotonic() - self.last_activity
        if self.login_state == "ready" and self.connected and idle > self.cfg["stall_after_s"]:
            self.counters["stalls"] += 1
            raise Stalled(f"stalled: connected but no update and no successful request for "
                          f"{idle:.1f}s (stall_after_s={self.cfg['stall_after_s']:g}); "
                          f"restarting the session")

    def _maybe_reconnect(self):
        if self.login_state != "ready" or self.reconnect_scheduled or self.reconnect_inflight:
            return
        if self.connected and self.breaker.state == CLOSED:
            return
        self.reconnect_scheduled = True
        self.after("reconnect", self.reconnect_backoff.next_delay(time.monotonic()))

    def _try_reconnect(self):
        state = self.breaker.state
        if state == CLOSED and self.connected:
            return
        if state == OPEN or (state == HALF_OPEN and not self.breaker.allow()):
            # Failing fast for now (or an action holds the half-open probe slot): look again
            # soon, without taking a backoff step, since no attempt was made.
            self.reconnect_scheduled = True
            self.after("reconnect", max(0.05, self.cfg["breaker_reset_s"] / 4))
            return
        self.reconnect_inflight = True
        self.counters["reconnect_attempts"] += 1
        self.engine_reconnect()

    def _report_metrics(self):
        m, bot = self.metrics, self.name
        m.set("tgfleet_backend_connected", 1.0 if self.connected else 0.0, bot=bot,
              library=self.library)
        m.set("tgfleet_backend_requests_in_flight", len(self.in_flight), bot=bot)
        m.set("tgfleet_circuit_state", CIRCUIT_VALUES.get(self.breaker.state, 0), bot=bot)
        m.tick(self)
        self.report_info(f"circuit={self.breaker.state} login={self.login_state} "
                         f"in_flight={len(self.in_flight)} unfinished={len(self.unacked)}")

    # ---- probes and stop --------------------------------------------------------------------
    def on_probe(self, msg, sender):
        """Answered from the library thread, so a hung loop shows as a missed probe."""
        if not self.engine_started:
            self.send(sender, ProbeReply(self.child_id, msg.seq, True, "loading session"))
        else:
            self.engine_probe(msg.seq, sender)

    def on_stop(self):
        """Disconnect cleanly, save the session, stop the library thread; fail what is left so
        the bot can retry it elsewhere. Every wait is bounded by stop_timeout_s."""
        if not hasattr(self, "cfg"):
            return
        try:
            blob = None
            if self.engine_started:
                try:
                    blob = self.engine_stop(self.cfg["stop_timeout_s"])
                except Exception as exc:
                    self.log.warning("%s: clean disconnect failed: %s", self.path, describe(exc))
            if blob is not None and self.login_state == "ready":
                try:
                    self._persist(blob, "stop")
                except OSError as exc:
                    self.log.warning("%s: session not saved at stop: %s", self.path, exc)
            for action_id, action, reply_to, bot in list(self.in_flight.values()) + \
                    list(self.queue):
                self._out_results.append((reply_to, bot, ActionResult(
                    action_id, False, "network", "backend stopped before the action completed")))
            self.in_flight.clear()
            self.queue.clear()
            self._flush_out()
            if self.bot_lane is not None:
                self.bot_lane.flush()
                self._drop_bot_lane()
            if self.lane_listener is not None:
                self.unwatch_fd(self.lane_listener.fd)
                self.lane_listener.close()
                self.lane_listener = None
        finally:
            # Even if the clean-up above failed: with one process per bot a backend restarted
            # after a crash is a new actor in this same process, and must find the lock free.
            # Not while the library still runs (still connected): the process ends then, and
            # the kernel drops the lock with it (actors/hosted.py).
            if self.session_lock is not None and not self.left_behind():
                self.session_lock.release()   # after the session was saved and the client closed

    # ---- engine hooks (subclasses) --------------------------------------------------------
    def engine_start(self, body: dict | None):
        """Connect and authorize in the library thread; push ('opened', info) with info
        {'state': 'ready'|'awaiting_code', 'self_id', 'connected'} or ('open_failed', exc)."""
        raise NotImplementedError

    def engine_run(self, jobs: list):
        """Start every (seq, action_id, action) concurrently; push ('result', seq, result)."""
        raise NotImplementedError

    def engine_sign_in(self, request_id, sender, code: str, password: str):
        """Push ('signed_in', request_id, sender, info) or ('sign_in_failed', ..., exc)."""
        raise NotImplementedError

    def engine_health(self):
        """A cheap real request; push ('health', ok, detail, connected)."""
        raise NotImplementedError

    def engine_reconnect(self):
        """Reconnect if needed and prove it with a request; push ('reconnect_done', ok, d)."""
        raise NotImplementedError

    def engine_export(self, purpose: str):
        """Push ('session', purpose, blob-or-None)."""
        raise NotImplementedError

    def engine_probe(self, seq, sender):
        """Push ('probe', seq, sender) from the library thread."""
        raise NotImplementedError

    def engine_stop(self, timeout: float):
        """Disconnect and stop the library thread (bounded); return the final blob or None."""
        raise NotImplementedError

    def left_behind(self) -> str:
        return self.engine_left_running() if getattr(self, "engine_started", False) else ""

    def engine_left_running(self) -> str:
        """After engine_stop: what of the library still runs (e.g. "the asyncio loop thread"),
        "" when it all stopped."""
        return ""

    def engine_timer(self, name: str):
        """Timers of the engine itself (TDLib's recycling)."""

    def engine_stats(self) -> dict:
        return {}


# ---- asyncio libraries (Telethon, Pyrogram) ---------------------------------------------------

class AsyncioBackend(BackendActor):
    """The engine hooks on a `LoopThread`: every library call runs there, as a task, with no
    lock; completions come back through the sink. Subclasses provide the `lib_*` coroutines,
    which run on the loop thread only (they are the only code that touches `self.client`)."""

    health_timeout_cap_s = 10.0

    @property
    def health_timeout_s(self) -> float:
        """A health request may take two intervals (at least 1 s, at most 10 s)."""
        return min(self.health_timeout_cap_s, max(1.0, 2 * self.cfg["health_interval_s"]))

    def engine_start(self, body):
        self.client = None
        self.clients_created = 0
        self.lib_in_flight = 0
        self.lib_max_in_flight = 0
        self.lib_jobs_in_handler = 0       # jobs run by a library handler's task
        self._tasks: set = set()
        self._caller_threads: set = set()   # threads that ever called into the client: one
        self.loop = LoopThread(f"{self.library}-{self.name}")
        self.sink.defer = self.loop.call_soon
        self._eager: list | None = None    # see push_update_keeping_jobs
        self._spawn(self.lib_open(body), "opened", "open_failed")

    def _spawn(self, coro, ok_kind: str, fail_kind: str, *extra):
        """Run `coro` on the loop; push (ok_kind, *extra, value) or (fail_kind, *extra, exc)."""
        sink = self.sink

        async def runner():
            try:
                value = await coro
            except Exception as exc:
                sink.push((fail_kind, *extra, exc))
                return
            sink.push((ok_kind, *extra, value))
        self.loop.submit(runner())

    def engine_run(self, jobs):
        loop = self.loop
        if loop.on_loop_thread():
            self._start_jobs(jobs)     # delivered inline (system/inline.py): no extra iteration
        else:
            loop.call_soon(self._start_jobs, jobs)

    def _start_jobs(self, jobs):           # loop thread
        if self._eager is not None:        # in push_update_keeping_jobs: its caller runs them
            self._eager.extend(jobs)
            return
        create = self.loop.loop.create_task
        for seq, action_id, action in jobs:
            task = create(self._run_job(seq, action_id, action))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_job(self, seq, action_id, action):   # loop thread
        self._caller_threads.add(threading.get_ident())
        self.lib_in_flight += 1
        self.lib_max_in_flight = max(self.lib_max_in_flight, self.lib_in_flight)
        try:
            # asyncio.timeout, not wait_for: wait_for runs the call in a task of its own (one
            # more loop iteration and task per action on Python 3.11).
            async with asyncio.timeout(self.cfg["action_timeout_s"]):
                ids = await self.lib_execute(action)
            result = ActionResult(action_id, True, message_ids=tuple(ids or ()),
                                  sent_at=time.time())
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            result = ActionResult(action_id, False, "timeout",
                                  f"no answer within {self.cfg['action_timeout_s']:g}s")
        except Exception as exc:
            kind, flood_s, text = self.lib_classify(exc)
            result = ActionResult(action_id, False, kind, text, float(flood_s or 0.0))
        finally:
            self.lib_in_flight -= 1
        self.sink.push(("result", seq, result))

    def engine_sign_in(self, request_id, sender, code, password):
        self._spawn(self.lib_sign_in(code, password), "signed_in", "sign_in_failed",
                    request_id, sender)

    def engine_health(self):
        async def check():
            try:
                await asyncio.wait_for(self.lib_health(), self.health_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return False, describe(exc), self.lib_connected()
            return True, "", self.lib_connected()
        sink = self.sink

        async def runner():
            sink.push(("health", *(await check())))
        self.loop.submit(runner())

    def engine_reconnect(self):
        async def attempt():
            try:
                await asyncio.wait_for(self.lib_reconnect(), self.health_timeout_s * 2)
                await asyncio.wait_for(self.lib_health(), self.health_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return False, describe(exc)
            return True, ""
        sink = self.sink

        async def runner():
            sink.push(("reconnect_done", *(await attempt())))
        self.loop.submit(runner())

    def engine_export(self, purpose):
        floors = self.floors_for_export()

        async def export():
            try:
                body = await self.lib_export(floors)
            finally:
                floors.release()
            return None if body is None else encode_session(self.library, body)
        try:
            self._spawn(export(), "session", "session_failed", purpose)
        except BaseException:
            floors.release()          # never ran (the loop is closed)
            raise

    def engine_probe(self, seq, sender):
        try:
            self.loop.call_soon(self.sink.push, ("probe", seq, sender))
        except RuntimeError:
            self.log.warning("%s: the loop is closed: probe %s unanswered", self.path, seq)

    def engine_stop(self, timeout):
        loop = getattr(self, "loop", None)
        if loop is None:
            return None
        blob = None
        floors = self.floors_for_export()

        async def close():
            return await self.lib_close(floors)
        try:
            body = loop.submit(asyncio.wait_for(close(), timeout)).result(timeout + 1)
            blob = None if body is None else encode_session(self.library, body)
        except Exception as exc:
            self.log.warning("%s: clean close failed: %s", self.path, describe(exc))
        finally:
            floors.release()
            loop.stop(timeout)
        return blob

    def engine_left_running(self):
        loop = getattr(self, "loop", None)
        return "its asyncio loop thread" if loop is not None and loop.alive else ""

    def engine_stats(self):
        gate = getattr(self, "read_gate", None)
        return {"clients_created": getattr(self, "clients_created", 0),
                "max_in_flight": getattr(self, "lib_max_in_flight", 0),
                "jobs_in_handler": getattr(self, "lib_jobs_in_handler", 0),
                "caller_threads": len(getattr(self, "_caller_threads", ())),
                **(gate.stats() if gate is not None else {})}

    def push_update(self, message):
        """Library handlers (loop thread) hand an IncomingMessage to the actor: at once when
        it is the only update on its way (`lib_update_alone`), else with the others handled
        in this loop iteration, as one batch. Why at once: a batch of one gains nothing from
        waiting, and on the loop's next iteration a light-load update waited ~0.06 ms."""
        self.in_transit.pushed(message.resume)
        # Not from inside a delivery: there the base is busy, and a wake would only wake the
        # in-process runner (on the next iteration the update runs inline, system/inline.py).
        alone = self.loop.on_loop_thread() and inline.current() is None and \
            self.lib_update_alone()
        self.sink.push(("update", message), at_once=alone)

    def lib_update_alone(self) -> bool:
        """Loop thread, in the library's update handler: no other update is being handed to
        the actor in this loop iteration, nor waiting in the library to be. By default
        unknown (False): updates wait for the next iteration, as one batch."""
        return False

    def push_update_keeping_jobs(self, message) -> list:
        """`push_update` for a library handler that runs in a task of its own per update
        (Telethon). When the push was delivered to the actors right here (inline, the loop
        otherwise idle) and they answered with actions, their jobs are returned instead of
        started: the handler's task runs them (`run_jobs_here`). Why: a new task runs on the
        loop's next iteration; so a light-load answer starts one iteration (~0.04 ms) sooner.
        Not for a library with a fixed pool of handler workers (Pyrogram): a worker would wait
        for the send's round trip instead of taking the next update."""
        self._eager = jobs = []
        try:
            self.push_update(message)
        finally:
            self._eager = None
        return jobs

    async def run_jobs_here(self, jobs: list) -> None:
        """Run the first job in the current task and start the others as tasks of their own."""
        if len(jobs) > 1:
            self._start_jobs(jobs[1:])
        self.lib_jobs_in_handler += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._run_job(*jobs[0])
        finally:
            self._tasks.discard(task)

    def floors_for_export(self):
        """Actor thread, when it asks for an export: what the session must not resume past
        (system/resume.py), as a function the library thread calls once it has read the state.
        It returns the floors of every update this actor holds now, plus those pushed after
        the ones it has seen so far (still on their way to it)."""
        held = resume.held_floors(self._out_updates, self.buffered, self.unacked.values())
        seen = self.updates_seen
        in_transit = self.in_transit
        token = in_transit.pin(seen)    # until the export is over: see resume.InTransit

        def floors():
            return resume.merge(held, in_transit.floors_after(seen))
        floors.release = lambda: in_transit.unpin(token)
        return floors

    # ---- the library part (loop thread) ---------------------------------------------------
    async def lib_open(self, body: dict | None) -> dict:
        raise NotImplementedError

    async def lib_sign_in(self, code: str, password: str) -> dict:
        raise NotImplementedError

    async def lib_execute(self, action) -> tuple:
        """Perform one action; return the message ids it produced."""
        raise NotImplementedError

    def lib_classify(self, exc: BaseException) -> tuple:
        """(error_kind, flood_wait_s, text) for an exception raised by lib_execute."""
        raise NotImplementedError

    async def lib_health(self) -> None:
        raise NotImplementedError

    def lib_connected(self) -> bool:
        raise NotImplementedError

    async def lib_reconnect(self) -> None:
        raise NotImplementedError

    async def lib_export(self, floors) -> dict | None:
        """The session body to save, its update state no later than `floors()` (called once
        the body is taken: what this backend holds or has on its way; system/resume.py)."""
        raise NotImplementedError

    async def lib_close(self, floors) -> dict | None:
        """Disconnect; the final session body, its update state no later than `floors()`."""
        raise NotImplementedError
