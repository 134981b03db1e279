"""Crash safety (processes base): SIGKILL the store at random moments while writes are in flight,
let its supervisor restart it, and check that every write it ACKed is there and the database is
intact.

Each round: find the running store (address and pid) through its supervisor, fire a burst of
KvSet / OutboxPut tells, SIGKILL the store after a random number of them (plus a random few
milliseconds, so the kill lands anywhere in the commit pipeline), and collect the replies that
made it out. An ACK is only sent after COMMIT returned, so every ACKed write must survive.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import time

from messages import codec
from messages.lifecycle import ChildSpec, Start, Started
from messages.store import KvGet, KvSet, OutboxPending, OutboxPut, StoreReply
from tests.store.helpers import ChildInfo, FindChild, rid

ROUNDS = 15
BURST = 240            # writes per round (half KvSet, half OutboxPut)


def _running_store(fleet, sup, not_pid: int, timeout: float = 15.0) -> ChildInfo:
    deadline = time.monotonic() + timeout
    where = None
    while time.monotonic() < deadline:
        where = fleet.ask_for(sup, FindChild("store"), lambda r: isinstance(r, ChildInfo), 5)
        assert where is not None, "the supervisor does not answer"
        if where.state == "running" and where.pid and where.pid != not_pid:
            return where
        time.sleep(0.02)
    raise AssertionError(f"store not running again after {timeout}s: {where!r}")


def test_acked_writes_survive_sigkill(proc_fleet):
    fleet = proc_fleet
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    db = fleet.db("crash.db")
    sup = fleet.create("tests.store.helpers.AddressingSupervisor")
    args = {"children": [ChildSpec("store", "actors.store.StoreActor",
                                   {"path": db, "state_cleanup_s": 2.0}, kind="store")],
            "intensity": 1000, "period": 1.0,
            "backoff": {"base_s": 0.01, "max_s": 0.05}}
    assert isinstance(fleet.fs.ask(sup, Start("root", args, {}, "root"), 15), Started)

    sent_msgs: dict[str, object] = {}
    acked_kv: dict[str, int] = {}
    acked_outbox: dict[str, int] = {}

    def record(reply):
        """An ACK, whenever it arrives (late ones too): that write must survive."""
        if not isinstance(reply, StoreReply) or reply.request_id not in sent_msgs:
            return
        assert reply.ok, reply
        m = sent_msgs[reply.request_id]
        if isinstance(m, KvSet):
            acked_kv[m.key] = m.value
        else:
            acked_outbox[m.item_id] = m.payload["n"]

    pid = 0
    unacked = 0
    for rnd in range(ROUNDS):
        where = _running_store(fleet, sup, not_pid=pid)
        fleet.remember_processes()
        pid = where.pid
        msgs = []
        for i in range(BURST // 2):
            msgs.append(KvSet(f"kv-{rnd}-{i}", f"k{rnd}-{i}", rnd * 1000 + i))
            msgs.append(OutboxPut(f"ob-{rnd}-{i}", "alpha", f"o{rnd}-{i}",
                                  {"n": rnd * 1000 + i, "pad": "x" * rng.randrange(200)}))
        kill_at = rng.randrange(1, len(msgs))
        for msg in msgs[:kill_at]:
            sent_msgs[msg.request_id] = msg
            fleet.fs.tell(where.addr, msg)
        time.sleep(rng.uniform(0, 0.005))
        os.kill(pid, signal.SIGKILL)
        got = fleet.collect({m.request_id for m in msgs[:kill_at]}, timeout=0.5)
        for reply in got.values():
            record(reply)
        unacked += kill_at - len(got)

    # the store came back after every kill and still answers
    where = _running_store(fleet, sup, not_pid=pid)
    assert where.restarts == ROUNDS
    reply = fleet.call(where.addr, KvGet(rid(), "k0-0"))
    assert reply.ok
    pending = fleet.call(where.addr, OutboxPending(rid(), "alpha"))
    for stray in fleet.strays:
        record(stray)
    assert pending.ok
    assert set(acked_outbox) <= {item for item, _ in pending.value}
    print(f"sent {len(sent_msgs)}, acked {len(acked_kv) + len(acked_outbox)}, "
          f"unanswered when killed {unacked}")
    assert acked_kv and acked_outbox, "nothing was ACKed: the test proved nothing"

    fleet.shutdown()           # idempotent: the fixture's own shutdown does nothing more
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kv = {k: codec.decode(v, kind="kv")[1]["value"]
              for k, v in con.execute("SELECT key, value FROM kv")}
        outbox = {i: codec.decode(p, kind="outbox")[1]["n"]
                  for i, p in con.execute("SELECT item_id, payload FROM outbox WHERE bot = ?",
                                          ("alpha",))}
    finally:
        con.close()
    missing_kv = {k for k, v in acked_kv.items() if kv.get(k) != v}
    missing_ob = {k for k, v in acked_outbox.items() if outbox.get(k) != v}
    assert not missing_kv and not missing_ob, \
        f"ACKed writes lost: {sorted(missing_kv)[:10]} {sorted(missing_ob)[:10]}"
