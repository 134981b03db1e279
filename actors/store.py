"""StoreActor: the only writer of tgfleet's SQLite database.

One aiosqlite connection lives on the actor's own `LoopThread`; `receiveMessage` never touches
SQLite. A request is validated and its payload encoded in the actor (bad input is answered at
once with `StoreReply(ok=False)`), then queued. The queue is executed in batches on the loop
thread, each batch in ONE transaction, and every reply of a batch is sent only after its COMMIT
returned (group commit): while one transaction is in flight, everything that arrives waits and
then shares the next one, so under load one commit (one fsync) serves many writes and under no
load a write is committed at once. Requests are executed in arrival order, so a read sees every
write that arrived before it. The exception is a background record (`DedupCheck.background`, a
bot's record of updates it has finished, which nobody waits for): with only such records
queued, the batch waits until the oldest is `record_delay_s` old (or the batch is full, or any
other request arrives). Why: at light load every answered message made its own record, and so
its own transaction: thread hand-overs and wake-ups that cost the in-process fleet more CPU per
message than the message itself (bench/RESULTS.md, eighteenth session); fifty bots' records now
share one.

Durability (`PRAGMA synchronous`, argument `synchronous`, default FULL) with journal_mode=WAL:
- SIGKILL, a crash of this process or of the whole service: with NORMAL or FULL, every COMMIT
  that returned is in the WAL file (written with write(2) before COMMIT returns), which the
  kernel keeps; the next open replays it. Nothing ACKed is lost, nothing half-written is seen.
- Power cut or kernel panic: only FULL fsyncs the WAL at every COMMIT. With NORMAL the WAL is
  fsynced at checkpoints only, so the last ACKed transactions may be rolled back (the database
  stays consistent, but an ACKed outbox item or session could vanish).
An ACK here is a promise (the outbox holds sends that must survive a crash), so FULL is the
default; group commit pays the fsync once per batch, not once per write. NORMAL is a valid
choice where a power cut may lose the last moments (see bench/store_bench.py for the cost).

Schema: versioned with `PRAGMA user_version`; `MIGRATIONS` is a list of forward migrations,
each applied in its own transaction together with its user_version bump, so a crash during a
migration leaves the previous version intact. `Started` is reported only after the database is
open and migrated; a database newer than this code is refused (the actor crashes on start).

Bounded tables: dedup keys are capped per bot (`dedup_max`, oldest pruned at once, in the same
transaction); expired user state is invisible at once and purged every `state_cleanup_s`
seconds; the audit log keeps about `audit_max` rows.

Arguments (Start.args): path (required), dedup_max=10000, state_cleanup_s=60,
audit_max=100000, max_payload=64 KiB, max_batch=256 (requests per transaction),
max_queue=50000 (requests waiting; beyond it requests are refused with "store overloaded" and
counted as dropped), record_delay_s=0.2 (background records, above), synchronous="FULL",
busy_timeout_ms=5000, hung_after_s=30 (a transaction in flight for longer makes the probe answer
unhealthy, so the supervisor replaces a store stuck in SQLite).
"""
from __future__ import annotations

import collections
import concurrent.futures
import math
import os
import sqlite3
import time

import aiosqlite

from actors.base import FleetActor
from messages import codec
from messages.lifecycle import LifecycleEvent, ProbeReply
from messages.store import (REQUESTS, DedupCheck, DedupRecent, DeleteBotConfig, GetBotConfig, KvGet, KvSet,
                            ListBotConfigs, OutboxDone, OutboxPending, OutboxPut, PutBotConfig,
                            QueryAudit, SessionGet, SessionPut, StateGet, StatePut, StoreReply,
                            StoreStats)
from system.loopthread import LoopThread
from system.metrics_client import MetricsBuffer

MAX_NAME = 256             # bot names, accounts, kv keys, item ids (characters)
MAX_KEYS = 10_000          # keys per DedupCheck / ids per OutboxDone
MAX_AUDIT_QUERY = 10_000
_IN_CHUNK = 500            # host parameters per IN (...) query
TABLES = ("bot_configs", "audit_log", "dedup_keys", "user_state", "sessions", "outbox", "kv")

# ---- schema ---------------------------------------------------------------------------------

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE bot_configs (
               name TEXT PRIMARY KEY,
               config BLOB NOT NULL,            -- codec envelope, kind 'bot_config'
               updated_at REAL NOT NULL)""",
        """CREATE TABLE audit_log (
               id INTEGER PRIMARY KEY,
               ts REAL NOT NULL,
               path TEXT NOT NULL,
               event TEXT NOT NULL,
               reason TEXT NOT NULL DEFAULT '')""",
        # `key` has no declared type: an int key stays an int, a str key a str.
        """CREATE TABLE dedup_keys (
               seq INTEGER PRIMARY KEY,         -- insertion order: the oldest are pruned
               bot TEXT NOT NULL,
               key NOT NULL,
               UNIQUE (bot, key))""",
        "CREATE INDEX dedup_keys_bot_seq ON dedup_keys (bot, seq)",
        """CREATE TABLE user_state (
               bot TEXT NOT NULL,
               user_id INTEGER NOT NULL,
               state BLOB NOT NULL,             -- codec envelope, kind 'user_state'
               expires_at REAL,                 -- unix time; NULL = never
               updated_at REAL NOT NULL,
               PRIMARY KEY (bot, user_id))""",
        "CREATE INDEX user_state_expires ON user_state (expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE sessions (
               account TEXT PRIMARY KEY,
               data BLOB NOT NULL,              -- the backend's own session string, as given
               updated_at REAL NOT NULL)""",
        """CREATE TABLE outbox (
               seq INTEGER PRIMARY KEY,
               bot TEXT NOT NULL,
               item_id NOT NULL,
               payload BLOB NOT NULL,           -- codec envelope, kind 'outbox'
               created_at REAL NOT NULL,
               UNIQUE (bot, item_id))""",
        """CREATE TABLE kv (
               key TEXT PRIMARY KEY,
               value BLOB NOT NULL,             -- codec envelope, kind 'kv'
               updated_at REAL NOT NULL)""",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class SchemaError(RuntimeError):
    """The database's schema version is not one this code can use."""


async def _scalar(db, sql: str, params=()):
    rows = await db.execute_fetchall(sql, params)
    return rows[0][0] if rows else None


def _fetchall(db, sql: str, params=()) -> list:
    """sqlite3 (on aiosqlite's worker thread): every row of one query."""
    return db.execute(sql, params).fetchall()


def _scalar_now(db, sql: str, params=()):
    """sqlite3 (on aiosqlite's worker thread): the first column of the first row, or None."""
    rows = _fetchall(db, sql, params)
    return rows[0][0] if rows else None


async def migrate(db, migrations=None) -> tuple[int, int]:
    """Bring `db` (an aiosqlite connection in autocommit mode) to the newest version in
    `migrations`; returns (version before, version after). Each migration runs in one
    transaction with its user_version bump; a failing one is rolled back and re-raised."""
    migrations = MIGRATIONS if migrations is None else migrations
    latest = migrations[-1][0] if migrations else 0
    before = await _scalar(db, "PRAGMA user_version")
    if before > latest:
        raise SchemaError(f"database schema version {before} is newer than this code "
                          f"(newest known: {latest}); refusing to touch it")
    for version, statements in migrations:
        if version <= before:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another opener may have migrated meanwhile.
            if await _scalar(db, "PRAGMA user_version") >= version:
                await db.execute("ROLLBACK")
                continue
            for sql in statements:
                await db.execute(sql)
            await db.execute(f"PRAGMA user_version = {int(version)}")
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
    return before, await _scalar(db, "PRAGMA user_version")


# ---- one queued request ---------------------------------------------------------------------

class Refused(Exception):
    """A request that is answered ok=False with this message (bad input, unknown name)."""


class _Op:
    """A validated request waiting for (or inside) a batch. `run(db, now)` is a plain function
    executed inside the batch's transaction on aiosqlite's worker thread (`db` is that thread's
    sqlite3 connection); `finish(value)` optionally post-processes the value in
    the actor (where the latency records live)."""
    __slots__ = ("msg", "sender", "t_recv", "write", "multi", "run", "finish", "background")

    def __init__(self, msg, sender, write, run, multi=False, finish=None, background=False):
        self.background = background   # may wait for company (see the module's docstring)
        self.msg = msg
        self.sender = sender
        self.t_recv = time.perf_counter()
        self.write = write
        self.multi = multi          # several statements: wrapped in a SAVEPOINT
        self.run = run
        self.finish = finish


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Refused(f"{what} must be a non-empty str, got {value!r}"[:300])
    if len(value) > MAX_NAME:
        raise Refused(f"{what} is longer than {MAX_NAME} characters")
    return value


def _key(value, what: str):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Refused(f"{what} must be a str or an int, got {type(value).__name__}")
    if isinstance(value, str) and (not value or len(value) > MAX_NAME):
        raise Refused(f"{what} must be 1..{MAX_NAME} characters")
    if isinstance(value, int) and not -(2 ** 63) <= value < 2 ** 63:
        raise Refused(f"{what} does not fit in 64 bits")
    return value


def _user(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2 ** 63) <= value < 2 ** 63:
        raise Refused(f"user_id must be a 64-bit int, got {value!r}"[:300])
    return value


def _seq(value, what: str) -> tuple:
    if not isinstance(value, (tuple, list)):
        raise Refused(f"{what} must be a tuple, got {type(value).__name__}")
    if len(value) > MAX_KEYS:
        raise Refused(f"{what} has {len(value)} items, more than {MAX_KEYS}")
    return tuple(value)


def _percentiles(values) -> dict:
    vals = sorted(values)
    if not vals:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}

    def pct(p):
        return vals[min(len(vals) - 1, max(0, math.ceil(p / 100 * len(vals)) - 1))] * 1000

    return {"count": len(vals), "mean": round(sum(vals) / len(vals) * 1000, 3),
            "p50": round(pct(50), 3), "p90": round(pct(90), 3), "p99": round(pct(99), 3),
            "max": round(vals[-1] * 1000, 3)}


# ---- the actor ------------------------------------------------------------------------------

class StoreActor(FleetActor):
    kind = "store"
    start_async = True
    LATENCY_SAMPLES = 4096

    # ---- lifecycle ----------------------------------------------------------------------
    def on_start(self, args):
        """Runs in the actor when its supervisor sends Start: validates the arguments, starts
        the loop thread and opens the database there. `Started` follows from `on_bridge` once
        the database is open and migrated."""
        path = args.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError(f"store: 'path' must be a database file name, got {path!r}")
        self.db_path = path
        self.dedup_max = int(args.get("dedup_max", 10_000))
        self.state_cleanup_s = float(args.get("state_cleanup_s", 60.0))
        self.audit_max = int(args.get("audit_max", 100_000))
        self.max_payload = int(args.get("max_payload", codec.DEFAULT_MAX))
        self.max_batch = int(args.get("max_batch", 256))
        self.max_queue = int(args.get("max_queue", 50_000))
        self.record_delay_s = float(args.get("record_delay_s", 0.2))
        self.synchronous = str(args.get("synchronous", "FULL")).upper()
        self.busy_timeout_ms = int(args.get("busy_timeout_ms", 5000))
        self.hung_after_s = float(args.get("hung_after_s", 30.0))
        if self.synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"store: synchronous must be NORMAL, FULL or EXTRA, "
                             f"got {self.synchronous!r}")
        if min(self.dedup_max, self.max_batch, self.max_queue) < 1 or self.state_cleanup_s <= 0 \
                or not 0 <= self.record_delay_s <= 10:
            raise ValueError("store: dedup_max, max_batch and max_queue must be >= 1, "
                             "state_cleanup_s > 0, 0 <= record_delay_s <= 10")
        self.db = None                   # used only on the loop thread once open
        self.ready = False
        self.queue: collections.deque[_Op] = collections.deque()
        self.inflight = None             # (batch_no, ops, future, t_submit)
        self.batch_no = 0
        self.latencies: collections.deque = collections.deque(maxlen=self.LATENCY_SAMPLES)
        self.commit_times: collections.deque = collections.deque(maxlen=self.LATENCY_SAMPLES)
        self.counters = {"commits": 0, "writes": 0, "reads": 0, "refused": 0, "failed": 0,
                         "dropped": 0, "max_batch": 0, "purged_state": 0, "pruned_dedup": 0,
                         "pruned_audit": 0}
        self.journal_mode = ""
        self.schema = (0, 0)
        self._dedup_count: dict[str, int] = {}   # aiosqlite's thread only (inside batches)
        self.metrics = MetricsBuffer(self.path or "store")
        self.open_bridge()
        self.loop = LoopThread(f"store-{self.child_id}")
        self._conn = None                # the aiosqlite connection until it is closed
        self.open_future = self.loop.submit_to(self._open(), self.bridge, ("open",))

    def on_stop(self):
        """Runs once, in the actor, when the store stops (Stop, ActorExitRequest, a crash).
        Finishes the transaction in flight and what is queued (their replies are sent), then
        checkpoints and closes the connection and stops the loop thread. Waits are bounded."""
        loop = getattr(self, "loop", None)
        if loop is None:
            return
        self.cancel_timer("cleanup")
        try:
            if not self.open_future.done():     # stopped while opening: let the open finish
                concurrent.futures.wait([self.open_future], timeout=10)
            if self.inflight is not None:
                no, ops, fut, _ = self.inflight
                self._finish_batch(no, fut.result(timeout=10))
            while self.ready and self.queue:
                self._start_batch()
                no, ops, fut, _ = self.inflight
                self._finish_batch(no, fut.result(timeout=10))
        except Exception:
            self.log.exception("%s: could not finish pending requests while stopping",
                               self.path)
        finally:
            self.ready = False
            try:
                loop.submit(self._close()).result(timeout=10)
            except Exception:
                self.log.exception("%s: closing the database failed", self.path)
            loop.stop()
            if self._conn is not None:          # not closed above: at least end its thread
                self._conn.stop()
                self._conn = None

    def on_bridge(self, item):
        tag, fut = item
        if self._stopped:
            return   # on_stop already collected what it needed
        if tag[0] == "batch":
            if self.inflight is None or self.inflight[0] != tag[1]:
                return
            self._finish_batch(tag[1], fut.result())
            self._submit_batch()
        elif tag[0] == "open":
            self._opened(fut.result())   # an open/migration error raises here: let it crash
        elif tag[0] == "rows":
            if fut.exception() is None:
                for table, count in fut.result().items():
                    self.metrics.set("tgfleet_store_rows", float(count or 0), table=table)
        elif tag[0] == "probe":
            _, seq, sender = tag
            stuck = (self.inflight is not None
                     and time.perf_counter() - self.inflight[3] > self.hung_after_s)
            self.send(sender, ProbeReply(self.child_id, seq, not stuck,
                                         "transaction in flight too long" if stuck else ""))

    def _opened(self, result):
        self.journal_mode, self.schema = result
        self.ready = True
        if self.journal_mode != "wal":
            self.log.warning("%s: journal_mode is %r, not wal", self.path, self.journal_mode)
        self.log.info("%s: %s open, schema %d -> %d", self.path, self.db_path, *self.schema)
        self.every("cleanup", self.state_cleanup_s)
        self.metrics.schedule(self)
        self.every("row_counts", 15.0)
        self.after("row_counts", 0.5)
        self.report_started()
        self._submit_batch()

    def on_timer(self, name):
        if name == "cleanup" and self.ready:
            self.queue.append(_Op(None, None, True, self._run_cleanup, multi=True))
            self._submit_batch()
        elif name == "metrics":
            self.metrics.tick(self)
        elif name == "records":
            self._submit_batch()
        elif name == "row_counts" and self.ready:
            self.loop.submit_to(self._row_counts(), self.bridge, ("rows",))
            if not self.armed("row_counts"):
                self.every("row_counts", 15.0)

    async def _row_counts(self):
        """Rows per table for metrics, outside any write transaction, in one call on
        aiosqlite's thread (like a batch)."""
        db = self.db
        return await db._execute(
            lambda conn: {t: _scalar_now(conn, f"SELECT COUNT(*) FROM {t}") for t in TABLES},
            db._conn)

    def on_probe(self, msg, sender):
        """Answered through the loop thread, so a dead or wedged loop shows as missed probes; a
        transaction in flight longer than `hung_after_s` answers unhealthy."""
        if not getattr(self, "loop", None) or not self.loop.alive:
            return
        self.loop.submit_to(_noop(), self.bridge, ("probe", msg.seq, sender))

    # ---- requests -----------------------------------------------------------------------
    def on_LifecycleEvent(self, msg: LifecycleEvent, sender):
        """Fire-and-forget: appended to the audit log, no reply."""
        try:
            ts = float(msg.ts)
            row = (ts, str(msg.path)[:1000], str(msg.event)[:100], str(msg.reason)[:1000])
        except (TypeError, ValueError) as exc:
            self.log.warning("%s: unusable LifecycleEvent %r: %s", self.path, msg, exc)
            return

        def run(db, now):
            db.execute("INSERT INTO audit_log (ts, path, event, reason) "
                       "VALUES (?, ?, ?, ?)", row)
        self._enqueue(_Op(msg, None, True, run))

    def _on_request(self, msg, sender):
        prepare = getattr(self, "_prep_" + type(msg).__name__)
        try:
            op = prepare(msg, sender)
        except (Refused, codec.CodecError) as exc:
            self.counters["refused"] += 1
            self._reply(sender, msg, False, None, str(exc))
            return
        self._enqueue(op)

    def _enqueue(self, op: _Op):
        if len(self.queue) >= self.max_queue:
            # Bounded: refuse rather than grow without limit while SQLite is slow or stuck.
            self.counters["dropped"] += 1
            self._reply(op.sender, op.msg, False, None,
                        f"store overloaded: {len(self.queue)} requests queued")
            return
        self.queue.append(op)
        self._submit_batch()

    def _reply(self, sender, msg, ok, value, error=""):
        if sender is not None and msg is not None:
            self.send(sender, StoreReply(getattr(msg, "request_id", ""), ok, value, error))

    def _enc(self, obj, kind: str, what: str) -> bytes:
        if not isinstance(obj, dict):
            raise Refused(f"{what} must be a dict, got {type(obj).__name__}")
        try:
            return codec.encode(obj, kind, self.max_payload)
        except codec.CodecError as exc:
            raise Refused(f"{what} cannot be stored: {exc}") from exc

    def _dec(self, data: bytes, kind: str, what: str) -> dict:
        try:
            return codec.decode(data, self.max_payload + 1024, kind)[1]
        except codec.CodecError as exc:
            raise Refused(f"stored {what} is unreadable: {exc}") from exc

    # ---- batches ------------------------------------------------------------------------
    def _submit_batch(self):
        if self.ready and self.inflight is None and self.queue and not self._stopped:
            # Only background records waiting (a short queue: a full batch goes at once)?
            if len(self.queue) < self.max_batch and all(op.background for op in self.queue):
                wait = self.queue[0].t_recv + self.record_delay_s - time.perf_counter()
                if wait > 0.001:
                    self.after_unless_armed("records", wait)
                    return
            self._start_batch()

    def _start_batch(self):
        n = min(len(self.queue), self.max_batch)
        ops = [self.queue.popleft() for _ in range(n)]
        self.batch_no += 1
        fut = self.loop.submit_to(self._run_batch_async(ops), self.bridge,
                                  ("batch", self.batch_no))
        self.inflight = (self.batch_no, ops, fut, time.perf_counter())

    def _finish_batch(self, no, result):
        """The batch's transaction is over (COMMIT returned, or it failed): reply to everyone."""
        _, ops, _, t_submit = self.inflight
        self.inflight = None
        results, t_begin, t_end, committed = result
        writes = 0
        for op, (ok, value, error) in zip(ops, results):
            if op.msg is None:
                continue                      # the periodic cleanup: not a request
            if op.write:
                writes += 1
                if ok and committed:
                    # a background record's wait for company is not the store's latency
                    took = t_end - (t_submit if op.background else op.t_recv)
                    self.latencies.append(took)
                    self.metrics.observe("tgfleet_store_write_seconds", took)
            else:
                self.counters["reads"] += 1
            if not ok:
                self.counters["failed"] += 1
            if ok and op.finish is not None:
                value = op.finish(value)
            self._reply(op.sender, op.msg, ok, value, error)
        if committed and any(op.write for op in ops):
            self.counters["commits"] += 1
            self.counters["writes"] += writes
            self.commit_times.append(t_end - t_begin)
        self.counters["max_batch"] = max(self.counters["max_batch"], len(ops))

    def _run_batch(self, conn, ops: list[_Op]):
        """On aiosqlite's worker thread, in ONE call: all of `ops` in one transaction.
        Returns (results, t_begin, t_end, committed); results[i] = (ok, value, error).

        Why one call: each `await db.execute(...)` is a round trip loop thread -> aiosqlite's
        thread -> loop thread (a queue, a self-pipe wake-up and the GIL changing hands twice),
        and a dedup record took seven. In one call, `python -m bench.store_bench --quick
        --sync NORMAL` on the in-process base went from 1,408 to 2,937 serial writes/s. `conn`
        is the sqlite3 connection aiosqlite opened on this thread."""
        db = conn
        now = time.time()
        has_write = any(op.write for op in ops)
        results: list = []
        t_begin = time.perf_counter()
        try:
            db.execute("BEGIN IMMEDIATE" if has_write else "BEGIN")
        except sqlite3.Error as exc:
            err = f"database error: {exc}"
            return [(False, None, err)] * len(ops), t_begin, time.perf_counter(), False
        aborted = ""
        for op in ops:
            if op.multi:
                db.execute("SAVEPOINT op")
            try:
                value = op.run(db, now)
            except Exception as exc:   # per request: a failure never takes the batch down
                if isinstance(exc, Refused):
                    error = str(exc)
                elif isinstance(exc, sqlite3.Error):
                    error = f"database error: {exc}"
                else:
                    self.log.exception("%s: %s failed", self.path, type(op.msg).__name__)
                    error = f"internal error: {type(exc).__name__}: {exc}"
                if not db.in_transaction:       # SQLite rolled the whole transaction back
                    aborted = error
                    break
                if op.multi:
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                results.append((False, None, error))
                continue
            if op.multi:
                db.execute("RELEASE op")
            results.append((True, value, ""))
        if not aborted:
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                aborted = f"commit failed: {exc}"
        t_end = time.perf_counter()
        if aborted:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    self.log.error("%s: rollback failed: %s", self.path, exc)
            self._dedup_count.clear()   # counts may include rolled-back inserts
            self.log.error("%s: transaction of %d requests failed: %s", self.path, len(ops),
                           aborted)
            return [(False, None, aborted)] * len(ops), t_begin, t_end, False
        return results, t_begin, t_end, True

    async def _run_batch_async(self, ops: list[_Op]):
        """On the loop thread: hand the whole batch to aiosqlite's thread as one call
        (`Connection._execute`, aiosqlite's own way of running a function there; the version
        range is pinned in pyproject.toml)."""
        db = self.db
        return await db._execute(self._run_batch, db._conn, ops)

    # ---- open and close (loop thread) ---------------------------------------------------
    async def _open(self):
        directory = os.path.dirname(os.path.abspath(self.db_path))
        os.makedirs(directory, exist_ok=True)
        db = await aiosqlite.connect(self.db_path, isolation_level=None,
                                     timeout=self.busy_timeout_ms / 1000)
        self._conn = db
        try:
            mode = await _scalar(db, "PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={self.synchronous}")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            schema = await migrate(db)
        except BaseException:
            await db.close()
            self._conn = None
            raise
        self.db = db
        return str(mode).lower(), schema

    async def _close(self):
        db, self.db = self.db, None
        if db is None:
            return
        try:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            await db.execute("PRAGMA optimize")
            await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await db.close()
            self._conn = None

    # ---- request types: validation in the actor, SQL on aiosqlite's thread ------------
    def _prep_PutBotConfig(self, msg: PutBotConfig, sender):
        name = _name(msg.name, "bot name")
        blob = self._enc(msg.config, "bot_config", "bot config")

        def run(db, now):
            db.execute(
                "INSERT INTO bot_configs (name, config, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET config = excluded.config, "
                "updated_at = excluded.updated_at", (name, blob, now))
        return _Op(msg, sender, True, run)

    def _prep_GetBotConfig(self, msg: GetBotConfig, sender):
        name = _name(msg.name, "bot name")

        def run(db, now):
            rows = _fetchall(db, "SELECT config FROM bot_configs WHERE name = ?", (name,))
            if not rows:
                raise Refused(f"no such bot config: {name}")
            return self._dec(rows[0][0], "bot_config", f"bot config {name}")
        return _Op(msg, sender, False, run)

    def _prep_ListBotConfigs(self, msg: ListBotConfigs, sender):
        def run(db, now):
            rows = _fetchall(
                db, "SELECT name, config FROM bot_configs ORDER BY name")
            return {name: self._dec(blob, "bot_config", f"bot config {name}")
                    for name, blob in rows}
        return _Op(msg, sender, False, run)

    def _prep_DeleteBotConfig(self, msg: DeleteBotConfig, sender):
        name = _name(msg.name, "bot name")

        def run(db, now):
            cur = db.execute("DELETE FROM bot_configs WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise Refused(f"no such bot config: {name}")
        return _Op(msg, sender, True, run)

    def _prep_QueryAudit(self, msg: QueryAudit, sender):
        limit = msg.limit
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or not 1 <= limit <= MAX_AUDIT_QUERY:
            raise Refused(f"limit must be an int in 1..{MAX_AUDIT_QUERY}, got {limit!r}")
        prefix = msg.path_prefix
        if not isinstance(prefix, str):
            raise Refused(f"path_prefix must be a str, got {type(prefix).__name__}")

        def run(db, now):
            if prefix:
                rows = _fetchall(
                    db, "SELECT ts, path, event, reason FROM audit_log "
                    "WHERE substr(path, 1, ?) = ? ORDER BY id DESC LIMIT ?",
                    (len(prefix), prefix, limit))
            else:
                rows = _fetchall(
                    db, "SELECT ts, path, event, reason FROM audit_log ORDER BY id DESC LIMIT ?",
                    (limit,))
            return tuple(LifecycleEvent(*row) for row in reversed(rows))
        return _Op(msg, sender, False, run)

    def _prep_DedupCheck(self, msg: DedupCheck, sender):
        bot = _name(msg.bot, "bot name")
        # Each key once, in order (1 and "1" are different keys: the column keeps the type).
        keys = tuple(dict.fromkeys(_key(k, "dedup key") for k in _seq(msg.keys, "keys")))
        limit = self.dedup_max

        def run(db, now):
            seen = set()
            for i in range(0, len(keys), _IN_CHUNK):
                chunk = keys[i:i + _IN_CHUNK]
                rows = _fetchall(
                    db, f"SELECT key FROM dedup_keys WHERE bot = ? AND key IN "
                    f"({','.join('?' * len(chunk))})", (bot, *chunk))
                seen.update((type(r[0]), r[0]) for r in rows)
            new = tuple(k for k in keys if (type(k), k) not in seen)
            if not new:
                return new
            count = self._dedup_count.get(bot)
            if count is None:
                count = _scalar_now(db, "SELECT COUNT(*) FROM dedup_keys WHERE bot = ?",
                                    (bot,))
            db.executemany("INSERT INTO dedup_keys (bot, key) VALUES (?, ?)",
                           [(bot, k) for k in new])
            count += len(new)
            if count > limit:
                cur = db.execute(
                    "DELETE FROM dedup_keys WHERE seq IN (SELECT seq FROM dedup_keys "
                    "WHERE bot = ? ORDER BY seq LIMIT ?)", (bot, count - limit))
                self.counters["pruned_dedup"] += cur.rowcount
                count = limit
            self._dedup_count[bot] = count
            return new
        return _Op(msg, sender, True, run, multi=True, background=msg.background is True)

    def _prep_DedupRecent(self, msg: DedupRecent, sender):
        bot = _name(msg.bot, "bot name")
        limit = msg.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise Refused(f"limit must be an int >= 1, got {limit!r}")
        limit = min(limit, self.dedup_max)

        def run(db, now):
            rows = _fetchall(
                db, "SELECT key FROM dedup_keys WHERE bot = ? ORDER BY seq DESC LIMIT ?",
                (bot, limit))
            return tuple(r[0] for r in reversed(rows))
        return _Op(msg, sender, False, run)

    def _prep_StateGet(self, msg: StateGet, sender):
        bot = _name(msg.bot, "bot name")
        user = _user(msg.user_id)

        def run(db, now):
            rows = _fetchall(
                db, "SELECT state FROM user_state WHERE bot = ? AND user_id = ? "
                "AND (expires_at IS NULL OR expires_at > ?)", (bot, user, now))
            return self._dec(rows[0][0], "user_state", "user state") if rows else None
        return _Op(msg, sender, False, run)

    def _prep_StatePut(self, msg: StatePut, sender):
        bot = _name(msg.bot, "bot name")
        user = _user(msg.user_id)
        ttl = msg.ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or math.isnan(ttl) \
                or ttl <= 0:
            raise Refused(f"ttl_s must be a number > 0 (inf: never expires), got {ttl!r}")
        blob = self._enc(msg.state, "user_state", "user state")

        def run(db, now):
            expires = None if math.isinf(ttl) else now + ttl
            db.execute(
                "INSERT INTO user_state (bot, user_id, state, expires_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (bot, user_id) DO UPDATE SET "
                "state = excluded.state, expires_at = excluded.expires_at, "
                "updated_at = excluded.updated_at", (bot, user, blob, expires, now))
        return _Op(msg, sender, True, run)

    def _prep_SessionGet(self, msg: SessionGet, sender):
        account = _name(msg.account, "account")

        def run(db, now):
            rows = _fetchall(db, "SELECT data FROM sessions WHERE account = ?", (account,))
            return bytes(rows[0][0]) if rows else None
        return _Op(msg, sender, False, run)

    def _prep_SessionPut(self, msg: SessionPut, sender):
        account = _name(msg.account, "account")
        data = msg.data
        if not isinstance(data, (bytes, bytearray)):
            raise Refused(f"session data must be bytes, got {type(data).__name__}")
        if len(data) > self.max_payload:
            raise Refused(f"session data is {len(data)} bytes, more than the limit of "
                          f"{self.max_payload}")
        data = bytes(data)

        def run(db, now):
            db.execute(
                "INSERT INTO sessions (account, data, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (account) DO UPDATE SET data = excluded.data, "
                "updated_at = excluded.updated_at", (account, data, now))
        return _Op(msg, sender, True, run)

    def _prep_OutboxPut(self, msg: OutboxPut, sender):
        bot = _name(msg.bot, "bot name")
        item = _key(msg.item_id, "item_id")
        blob = self._enc(msg.payload, "outbox", "outbox payload")

        def run(db, now):
            db.execute(
                "INSERT INTO outbox (bot, item_id, payload, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (bot, item_id) DO UPDATE SET payload = excluded.payload",
                (bot, item, blob, now))
        return _Op(msg, sender, True, run)

    def _prep_OutboxDone(self, msg: OutboxDone, sender):
        bot = _name(msg.bot, "bot name")
        items = [_key(i, "item_id") for i in _seq(msg.item_ids, "item_ids")]

        def run(db, now):
            if not items:
                return 0
            cur = db.executemany("DELETE FROM outbox WHERE bot = ? AND item_id = ?",
                                 [(bot, i) for i in items])
            return cur.rowcount
        return _Op(msg, sender, True, run, multi=True)

    def _prep_OutboxPending(self, msg: OutboxPending, sender):
        bot = _name(msg.bot, "bot name")

        def run(db, now):
            rows = _fetchall(
                db, "SELECT item_id, payload FROM outbox WHERE bot = ? ORDER BY seq", (bot,))
            return tuple((item, self._dec(blob, "outbox", f"outbox item {item}"))
                         for item, blob in rows)
        return _Op(msg, sender, False, run)

    def _prep_KvGet(self, msg: KvGet, sender):
        key = _name(msg.key, "key")

        def run(db, now):
            rows = _fetchall(db, "SELECT value FROM kv WHERE key = ?", (key,))
            return self._dec(rows[0][0], "kv", f"kv {key}")["value"] if rows else None
        return _Op(msg, sender, False, run)

    def _prep_KvSet(self, msg: KvSet, sender):
        key = _name(msg.key, "key")
        blob = self._enc({"value": msg.value}, "kv", "value")

        def run(db, now):
            db.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at", (key, blob, now))
        return _Op(msg, sender, True, run)

    def _prep_StoreStats(self, msg: StoreStats, sender):
        def run(db, now):
            rows = {}
            for table in TABLES:
                rows[table] = _scalar_now(db, f"SELECT COUNT(*) FROM {table}")
            pages = _scalar_now(db, "PRAGMA page_count")
            page_size = _scalar_now(db, "PRAGMA page_size")
            version = _scalar_now(db, "PRAGMA user_version")
            try:
                wal = os.path.getsize(self.db_path + "-wal")
            except OSError:
                wal = 0
            return {"rows": rows, "db_bytes": pages * page_size, "wal_bytes": wal,
                    "user_version": version}

        def finish(value):
            value.update(
                path=self.db_path, journal_mode=self.journal_mode,
                synchronous=self.synchronous,
                write_latency_ms=_percentiles(self.latencies),
                commit_ms=_percentiles(self.commit_times),
                queued=len(self.queue), dedup_max=self.dedup_max,
                **self.counters)
            return value
        return _Op(msg, sender, False, run, finish=finish)

    # ---- periodic cleanup (aiosqlite's thread, inside a batch) -------------------------
    def _run_cleanup(self, db, now):
        cur = db.execute("DELETE FROM user_state WHERE expires_at <= ?", (now,))
        self.counters["purged_state"] += cur.rowcount
        over = _fetchall(
            db, "SELECT bot, COUNT(*) FROM dedup_keys GROUP BY bot HAVING COUNT(*) > ?",
            (self.dedup_max,))
        for bot, count in over:
            cur = db.execute(
                "DELETE FROM dedup_keys WHERE seq IN (SELECT seq FROM dedup_keys "
                "WHERE bot = ? ORDER BY seq LIMIT ?)", (bot, count - self.dedup_max))
            self.counters["pruned_dedup"] += cur.rowcount
        self._dedup_count.clear()
        top = _scalar_now(db, "SELECT MAX(id) FROM audit_log")
        if top is not None and top > self.audit_max:
            cur = db.execute("DELETE FROM audit_log WHERE id <= ?", (top - self.audit_max,))
            self.counters["pruned_audit"] += cur.rowcount


async def _noop():
    return None


for _cls in REQUESTS:
    setattr(StoreActor, "on_" + _cls.__name__, StoreActor._on_request)
del _cls
