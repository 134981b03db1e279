"""SQLite persistence for the local Telegram's world.

Why: the world (accounts, auth keys, chats, members, messages, pts logs) must survive a
restart of the server, but SQLite must not become the bottleneck of message routing. The
in-memory World is the source of truth while running; every mutation appends a write here,
and writes are committed in batches (every `flush_interval` seconds or `max_pending` writes)
with sqlite3 on the server's own event loop. A crash loses at most the last batch.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS accounts (
    user_id INTEGER PRIMARY KEY, kind TEXT, username TEXT, first_name TEXT, last_name TEXT,
    phone TEXT, bot_token TEXT, access_hash INTEGER, pts INTEGER, simulated INTEGER,
    provisioned_key_id INTEGER, created INTEGER);
CREATE TABLE IF NOT EXISTS auth_keys (
    key_id INTEGER PRIMARY KEY, key BLOB, user_id INTEGER, created INTEGER);
CREATE TABLE IF NOT EXISTS chats (
    chat_id INTEGER PRIMARY KEY, kind TEXT, title TEXT, access_hash INTEGER, pts INTEGER,
    date INTEGER, username TEXT);
CREATE TABLE IF NOT EXISTS members (
    chat_id INTEGER, user_id INTEGER, role TEXT, PRIMARY KEY (chat_id, user_id));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, from_id INTEGER, peer_kind TEXT, peer_id INTEGER, date INTEGER,
    text TEXT, reply_to INTEGER, media TEXT, grouped_id INTEGER, fwd TEXT, edit_date INTEGER,
    deleted INTEGER, post INTEGER, entities TEXT);
CREATE TABLE IF NOT EXISTS events (
    owner_kind TEXT, owner_id INTEGER, pts INTEGER, kind TEXT, msg_ids TEXT, date INTEGER,
    PRIMARY KEY (owner_kind, owner_id, pts));
"""


class Store:
    """Write-behind SQLite store. `write(sql, params)` queues; `flush()` commits."""

    def __init__(self, path: str, flush_interval: float = 0.1, max_pending: int = 5000):
        self.path = path
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        cols = {row[1] for row in self.db.execute("PRAGMA table_info(messages)")}
        if "entities" not in cols:  # forward migration for stores created before entities
            self.db.execute("ALTER TABLE messages ADD COLUMN entities TEXT")
        self.db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
        self._pending: list[tuple[str, tuple]] = []
        self._timer = None
        self.commits = 0
        self.writes = 0

    # -- writes -----------------------------------------------------------------------
    def write(self, sql: str, params: tuple) -> None:
        self._pending.append((sql, params))
        if len(self._pending) >= self.max_pending:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.flush_interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            self.db.execute("BEGIN")
            # Group consecutive identical statements for executemany.
            i = 0
            while i < len(pending):
                sql = pending[i][0]
                j = i
                while j < len(pending) and pending[j][0] == sql:
                    j += 1
                self.db.executemany(sql, [p for _, p in pending[i:j]])
                i = j
            self.db.execute("COMMIT")
            self.commits += 1
            self.writes += len(pending)
        except (sqlite3.Error, OverflowError, ValueError, TypeError):
            log.exception("sqlite batch of %d writes failed; rolled back", len(pending))
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def close(self) -> None:
        self.flush()
        self.db.close()

    # -- typed helpers ----------------------------------------------------------------
    def put_meta(self, key: str, value) -> None:
        self.write("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, json.dumps(value)))

    def put_account(self, a) -> None:
        self.write("INSERT OR REPLACE INTO accounts VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (a.user_id, a.kind, a.username, a.first_name, a.last_name, a.phone,
                    a.bot_token, a.access_hash, a.pts, int(a.simulated),
                    _s64(a.provisioned_key_id) if a.provisioned_key_id is not None else None, a.created))

    def set_account_pts(self, user_id: int, pts: int) -> None:
        self.write("UPDATE accounts SET pts=? WHERE user_id=?", (pts, user_id))

    def put_auth_key(self, key_id: int, key: bytes, user_id, created: int) -> None:
        self.write("INSERT OR REPLACE INTO auth_keys VALUES (?,?,?,?)",
                   (_s64(key_id), key, user_id, created))

    def put_chat(self, c) -> None:
        self.write("INSERT OR REPLACE INTO chats VALUES (?,?,?,?,?,?,?)",
                   (c.chat_id, c.kind, c.title, c.access_hash, c.pts, c.date, c.username))

    def set_chat_pts(self, chat_id: int, pts: int) -> None:
        self.write("UPDATE chats SET pts=? WHERE chat_id=?", (pts, chat_id))

    def put_member(self, chat_id: int, user_id: int, role: str) -> None:
        self.write("INSERT OR REPLACE INTO members VALUES (?,?,?)", (chat_id, user_id, role))

    def put_message(self, m) -> None:
        self.write("INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (m.id, m.from_id, m.peer_kind, m.peer_id, m.date, m.text, m.reply_to,
                    json.dumps(m.media) if m.media else None, m.grouped_id,
                    json.dumps(m.fwd) if m.fwd else None, m.edit_date, int(m.deleted), int(m.post),
                    json.dumps(m.entities) if m.entities else None))

    def put_event(self, owner_kind: str, owner_id: int, pts: int, kind: str, msg_ids, date: int) -> None:
        self.write("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?)",
                   (owner_kind, owner_id, pts, kind, json.dumps(msg_ids), date))

    # -- reads (startup only) ---------------------------------------------------------
    def load(self, table: str, order: str = ""):
        cur = self.db.execute("SELECT * FROM %s %s" % (table, order))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur]

    def load_meta(self) -> dict:
        return {row["key"]: json.loads(row["value"]) for row in self.load("meta")}


def _s64(v: int) -> int:
    """SQLite integers are signed 64-bit; auth key ids are unsigned."""
    return v - (1 << 64) if v >= (1 << 63) else v


def u64(v: int) -> int:
    return v + (1 << 64) if v < 0 else v
