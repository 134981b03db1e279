"""What both baseline scripts share: reading the accounts file and picking the bots to run.

Why: the baselines are standalone scripts (a deployment would run them by hand), but they must
select exactly the same accounts from the same file the same way, so that part lives here.
"""
from __future__ import annotations

import json


def load_accounts(path: str) -> dict:
    """{"accounts": [...], "rsa_public_key": PEM or None} from a localtg accounts.json (or a
    plain JSON list of account entries)."""
    with open(path) as f:
        doc = json.load(f)
    if isinstance(doc, list):
        doc = {"accounts": doc, "rsa_public_key": None}
    if not isinstance(doc, dict) or not isinstance(doc.get("accounts"), list):
        raise SystemExit(f"{path}: expected {{'accounts': [...]}} or a list of accounts")
    return doc


def pick_bots(doc: dict, names: str) -> list[dict]:
    """The bot accounts named in NAMES (comma-separated usernames or user ids), in that order."""
    by_key = {}
    for acc in doc["accounts"]:
        by_key[str(acc.get("user_id"))] = acc
        if acc.get("username"):
            by_key[acc["username"].lower()] = acc
    out = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        acc = by_key.get(name.lower().lstrip("@"))
        if acc is None:
            raise SystemExit(f"bot {name!r} is not in the accounts file")
        if acc.get("kind") != "bot":
            raise SystemExit(f"account {name!r} is not a bot")
        out.append(acc)
    if not out:
        raise SystemExit("no bots given")
    return out


def server_address(acc: dict, host: str | None, port: int | None) -> tuple[str, int]:
    host = host or acc.get("host")
    port = port or acc.get("port")
    if not host or not port:
        raise SystemExit(f"no server address for {acc.get('username')}: pass --host/--port")
    return host, int(port)
