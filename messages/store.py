"""The store conversation: requests to `actors.store.StoreActor` and its one reply type.

Every request carries `request_id` (chosen by the sender, echoed back) and is answered with
exactly one `StoreReply(request_id, ok, value, error)`, sent to the request's sender. A write is
answered only after its transaction COMMITted, so `ok=True` on a write means "durable" (see the
StoreActor docstring for what survives what). `ok=False` carries a readable `error`: bad input,
unknown names, a payload too big to store; the store itself never crashes on bad input.

`messages.lifecycle.LifecycleEvent` is accepted too, fire-and-forget: it is appended to the
audit log and not answered.

Payload rules: dicts (configs, user state, outbox payloads) and kv values must be plain msgpack
data (None, bool, int, float, str, bytes, list/tuple, dict with str keys); tuples come back as
lists. Each is limited to `max_payload` bytes encoded (64 KiB by default).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from messages import fastpickle


@dataclass(frozen=True, slots=True)
class StoreReply:
    request_id: str
    ok: bool
    value: Any = None
    error: str = ""


# ---- bot configs ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PutBotConfig:
    """Create or replace. value: None."""
    request_id: str
    name: str
    config: dict


@dataclass(frozen=True, slots=True)
class GetBotConfig:
    """value: the config dict; ok=False with "no such bot config: NAME" if absent."""
    request_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ListBotConfigs:
    """value: dict name -> config, in name order."""
    request_id: str


@dataclass(frozen=True, slots=True)
class DeleteBotConfig:
    """value: None; ok=False with "no such bot config: NAME" if absent."""
    request_id: str
    name: str


# ---- audit log ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class QueryAudit:
    """value: tuple of `LifecycleEvent`, the newest `limit` (1..10000) whose path starts with
    `path_prefix`, oldest first."""
    request_id: str
    limit: int = 100
    path_prefix: str = ""


# ---- dedup ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DedupCheck:
    """Record `keys` (str or int) for `bot`; value: tuple of the keys that were NEW (not seen
    before), in the order given, each once. At most `dedup_max` keys are kept per bot, the
    oldest pruned: a key older than that counts as new again. `background`: nobody waits for
    the answer (a bot recording the keys of updates it has finished), so the store may hold
    it up to its `record_delay_s` to commit it together with others."""
    request_id: str
    bot: str
    keys: tuple
    background: bool = False


@dataclass(frozen=True, slots=True)
class DedupRecent:
    """The `limit` most recently recorded dedup keys of `bot`; value: a tuple of keys, oldest
    first. A (re)started bot loads them into its in-memory LRU at once, so a message that a
    previous incarnation answered is recognised without a store round trip per batch; fewer
    than `limit` keys means the store holds no others."""
    request_id: str
    bot: str
    limit: int


# ---- per-user state -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StateGet:
    """value: the state dict, or None if absent or expired."""
    request_id: str
    bot: str
    user_id: int


@dataclass(frozen=True, slots=True)
class StatePut:
    """Create or replace; it expires `ttl_s` seconds from now (float('inf'): never).
    Expired rows are invisible at once and purged periodically. value: None."""
    request_id: str
    bot: str
    user_id: int
    state: dict
    ttl_s: float


# ---- backend sessions -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SessionGet:
    """value: the session bytes, or None if the account has none stored."""
    request_id: str
    account: str


@dataclass(frozen=True, slots=True)
class SessionPut:
    """Store a backend's session string so a restarted backend resumes without a new login.
    value: None."""
    request_id: str
    account: str
    data: bytes


# ---- outbox: sends that must survive a crash ------------------------------------------------

@dataclass(frozen=True, slots=True)
class OutboxPut:
    """Add (or replace the payload of) one pending send. value: None."""
    request_id: str
    bot: str
    item_id: str
    payload: dict


@dataclass(frozen=True, slots=True)
class OutboxDone:
    """Remove sent items. value: how many were removed."""
    request_id: str
    bot: str
    item_ids: tuple


@dataclass(frozen=True, slots=True)
class OutboxPending:
    """value: tuple of (item_id, payload) still pending for `bot`, oldest first."""
    request_id: str
    bot: str


# ---- runtime key/value config ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class KvGet:
    """value: the stored value, or None if the key is absent."""
    request_id: str
    key: str


@dataclass(frozen=True, slots=True)
class KvSet:
    """value: None. `value` is any plain msgpack value (None stores None; it does not delete)."""
    request_id: str
    key: str
    value: Any


# ---- introspection --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StoreStats:
    """value: dict with "rows" (table -> count), "db_bytes", "wal_bytes", "user_version",
    "write_latency_ms" (count, mean, p50, p90, p99, max over recent writes: request received ->
    COMMIT returned), "commit_ms" (same over recent transactions: BEGIN -> COMMIT returned),
    counters since start ("commits", "writes", "reads", "refused", "failed", "dropped",
    "max_batch", "purged_state", "pruned_dedup", "pruned_audit"), "queued", "journal_mode",
    "synchronous", "path", "dedup_max"."""
    request_id: str


READS = (GetBotConfig, ListBotConfigs, QueryAudit, DedupRecent, StateGet, SessionGet,
         OutboxPending, KvGet, StoreStats)
WRITES = (PutBotConfig, DeleteBotConfig, DedupCheck, StatePut, SessionPut, OutboxPut,
          OutboxDone, KvSet)
REQUESTS = READS + WRITES


fastpickle.install(globals())   # messages/fastpickle.py: same bytes, less work
