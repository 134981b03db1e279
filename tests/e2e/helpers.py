"""Helpers for end-to-end tests: a fleet subprocess with its embedded local Telegram."""
import json
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
