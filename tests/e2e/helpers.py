"""Helpers for end-to-end tests: a fleet subprocess with its embedded local Telegram."""
import collections
import json
import os
import signal
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from system.localtg.control import ControlClient


def localtg_of(fleet) -> ControlClient:
    info = json.loads((fleet.tmp_path / "var" / "localtg" / "ready.json").read_text())
    fleet.localtg_info = info
    return ControlClient(info["host"], info["control_port"])


def server_of(fleet) -> dict:
    doc = json.loads((fleet.tmp_path / "var" / "localtg" / "accounts.json").read_text())
    return {"host": doc["host"], "port": doc["port"], "rsa_public_key": doc["rsa_public_key"]}


def wait_until(pred, timeout=30.0, step=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def replies_to(tg: ControlClient, user_id: int, bot_user_id: int, since_id: int = 0):
    return [m for m in tg.received(user_id, since_id=since_id, limit=500)
            if m.get("from_id") == bot_user_id]


def scrape(port: int) -> dict:
    """{(family, sample name, frozenset(labels)): value} from /metrics, parsed by
    prometheus-client's own parser."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(fam.name, s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (fam, sname, ls), v in samples.items()
               if sname == name and want <= set(ls))


def ctl_json(fleet, *args):
    """`ops/ctl --json ARGS`'s result; fails the test if the command failed."""
    r = fleet.ctl("--json", *args)
    assert r.returncode == 0, f"ctl {args} failed: {r.stdout} {r.stderr}"
    return json.loads(r.stdout)["result"]


def actors(fleet) -> dict:
    return {a["path"]: a for a in ctl_json(fleet, "status")["actors"]}


def slow_echo_bot(fleet, library="telethon", **config):
    """An echo bot "echo" (Telethon unless LIBRARY says otherwise) created through ctl (its answers held back by the default
    per-chat limit), running and answering; returns (local Telegram, user alice, bot)."""
    tg = localtg_of(fleet)
    alice = tg.create_account("user", username="alice")
    bot = tg.create_account("bot", username="slow_echo_bot")
    ctl_json(fleet, "create", "echo", "--library", library, "--config-json", json.dumps(
        {"token": bot["bot_token"], "handlers": [{"type": "echo"}],
         "server": server_of(fleet), **config}))
    wait_until(lambda: actors(fleet).get("root/bots/echo/bot", {}).get("state") == "running",
               60, what="the echo bot running")
    first = tg.send_as(alice["user_id"], bot["user_id"], "warm-up")
    wait_until(lambda: replies_to(tg, alice["user_id"], bot["user_id"], first["id"]), 30,
               what="the warm-up answered")
    return tg, alice, bot


def send_burst(tg, user, bot, n: int):
    """N messages "burst 0".."burst N-1" from USER to BOT at once. Returns (texts, answered):
    answered() counts the bot's replies to them, per text (a duplicate counts twice)."""
    texts = [f"burst {i}" for i in range(n)]
    sent = [tg.send_as(user["user_id"], bot["user_id"], t) for t in texts]
    since = sent[0]["id"] - 1

    def answered() -> collections.Counter:
        return collections.Counter(m["text"] for m in replies_to(
            tg, user["user_id"], bot["user_id"], since) if m["text"] in texts)
    return texts, answered


def kill_group_until_back(fleet, group: str, answered, texts) -> collections.Counter:
    """SIGKILL the backend and the bot of GROUP (e.g. "root/bots/echo") at once while some of
    TEXTS are still unanswered (what a group's death does: the group itself runs hosted in the
    bots supervisor, actors/hosted.py), wait until both run again with new pids, then until
    every one of TEXTS is answered; returns the answer counts."""
    rows = actors(fleet)
    old = {p: rows[f"{group}/{p}"]["pid"] for p in ("backend", "bot")}
    before = answered()
    assert len(before) < len(texts), "everything was answered before the kill: nothing to test"
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)
    seen = {}

    def back():
        rows = actors(fleet)
        seen.update({p: rows.get(f"{group}/{p}", {}) for p in old})
        return all(r.get("state") == "running" and r["pid"] != old[p] for p, r in seen.items())
    try:
        wait_until(back, 60, what=f"{group} restarted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; killed {old}, last seen {seen}" + fleet.output()[-8000:]) from None
    return wait_until(lambda: (lambda c: c if len(c) == len(texts) else None)(answered()), 60,
                      what=f"all {len(texts)} messages answered (before the kill: {dict(before)})")


def kill_until_back(fleet, path: str, answered, texts) -> collections.Counter:
    """SIGKILL the actor at PATH while some of TEXTS are still unanswered, wait until it runs
    again with a new pid, then until every one of TEXTS is answered; returns the answer
    counts."""
    old = actors(fleet)[path]
    before = answered()
    assert len(before) < len(texts), "everything was answered before the kill: nothing to test"
    os.kill(old["pid"], signal.SIGKILL)
    wait_until(lambda: (lambda a: a["state"] == "running" and a["pid"] != old["pid"])(
        actors(fleet)[path]), 60, what=f"{path} restarted")
    return wait_until(lambda: (lambda c: c if len(c) == len(texts) else None)(answered()), 60,
                      what=f"all {len(texts)} messages answered (before the kill: {dict(before)})")
