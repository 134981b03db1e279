"""Configuration: a TOML file, then environment overrides, validated with clear errors.

Every key has a default (the embedded demo runs with no file at all). An error names the key,
what was expected and what was found, e.g. `system.base: expected one of ['inprocess',
'processes'], got 'threads'`. Environment overrides are `TGFLEET_<SECTION>_<KEY>` (for example
`TGFLEET_SYSTEM_BASE=processes`, `TGFLEET_METRICS_PORT=9470`), parsed as the key's type.
Bot definitions (`[[bots]]`) are validated by `validate_bot` — the same function `ctl create`
goes through, so a bot is checked the same way whichever door it came in by.
"""
from __future__ import annotations

import copy
import os
import re
import tomllib
from typing import Any

from system import affinity, idle_gc
from system.placement import parse_convention


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


DEFAULTS: dict[str, dict[str, Any]] = {
    "system": {
        "base": "inprocess",          # inprocess | processes
        "admin_port": 19500,          # thespian admin port (processes base)
        "bind_host": "127.0.0.1",     # every listener binds here
        "data_dir": "./var",
        "shutdown_timeout_s": 15.0,
        "cpu_affinity": "auto",       # auto | none | cores like "1" or "0,2-3" (system/affinity.py)
        "memory_merge": "auto",       # auto | on | off: kernel same-page merging (system/memmerge.py)
        # processes base: "bot" = one process per bot (its backend and bot hosted in it,
        # actors/hosted.py), "actor" = one process per actor. No effect in one process.
        "process_unit": "bot",
        # Several hosts (system/placement.py): this system's name, which bots name in `host`;
        # and, on a member (`tgfleet member`), the leader's admin as "HOST:PORT".
        "host": "",
        "convention": "",
        # inprocess base: collect young garbage while the runner is idle once this many new
        # objects wait (system/idle_gc.py); 0 = only CPython's own collections.
        "idle_gc_young": idle_gc.DEFAULT_YOUNG_AT,
    },
    "control": {
        "port": 19501,                # ctl admin socket (msgpack frames, token-authenticated)
        "token_file": "",             # default: <data_dir>/admin.token (0600)
        "max_message_bytes": 65536,
    },
    "metrics": {"host": "127.0.0.1", "port": 9464},
    "log": {"level": "INFO", "json": False, "file": "", "levels": {}},
    "store": {"path": "", "synchronous": "FULL", "dedup_max": 10000, "record_delay_s": 0.2},
    "ratelimit": {
        "bot_per_s": 28.0, "bot_burst": 10, "chat_per_s": 0.95, "chat_burst": 2,
        "group_per_min": 19.0, "group_burst": 2, "user_account_per_s": 10.0,
        "lease_tokens": 4, "lease_s": 2.0,
    },
    "supervision": {
        "intensity": 5, "period_s": 30.0, "probe_interval_s": 5.0, "probe_misses": 3,
        "backoff_base_s": 0.05, "backoff_max_s": 30.0, "backoff_reset_after_s": 60.0,
        "bot_intensity": 5, "bot_period_s": 60.0,
    },
    "localtg": {
        "enabled": True,              # start the built-in local Telegram (demo / tests)
        "port": 0, "control_port": 0, "flood_limits": True, "delay_ms": 0.0,
        "demo_bots": 10, "crowd_users": 20, "crowd_rate": 5.0,
    },
}

CHOICES = {
    ("system", "base"): ("inprocess", "processes"),
    ("system", "memory_merge"): ("auto", "on", "off"),
    ("system", "process_unit"): ("actor", "bot"),
    ("store", "synchronous"): ("FULL", "NORMAL"),
    ("log", "level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
}
RANGES = {
    ("store", "record_delay_s"): (0.0, 10.0),   # actors/store.py: background records' wait
    ("store", "dedup_max"): (1, 10_000_000),
    ("system", "idle_gc_young"): (0, 1_000_000),
}


def _bound(x) -> str:
    """A range bound as written: '10' for 10.0, '1000000' for an int ({:g} would say 1e+06)."""
    return f"{x:g}" if isinstance(x, float) else str(x)


PORT_KEYS = {("system", "admin_port"), ("control", "port"), ("metrics", "port"),
             ("localtg", "port"), ("localtg", "control_port")}

LIBRARIES = ("telethon", "pyrogram", "tdlib")
ACCOUNT_KINDS = ("bot", "user")
BOT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
TOKEN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{10,}$")
PHONE = re.compile(r"^\+?\d{5,16}$")
BOT_DEFAULTS = {
    "library": "telethon", "account_kind": "bot", "handlers": [{"type": "echo"}],
    "enabled": True, "api_id": 1, "api_hash": "b6b154c3707471f5339bd661645ed3d6",
    "dedup_size": 10000, "state_ttl_s": 3600.0, "queue_max": 1000, "max_in_flight": 64,
    # the backend stops reading from Telegram above `high` undispatched updates, until `low`;
    # the same defaults as actors/backends/base.py DEFAULTS (a backend started without them)
    "update_backlog_high": 128, "update_backlog_low": 32,
    # Telethon: new messages go to the bot ahead of Telethon's update bookkeeping
    # (actors/backends/telethon_fastpath.py); the other libraries ignore it
    "fast_updates": True,
}


def _check_type(where: str, default, value):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
    return value


def _parse_env(where: str, default, text: str):
    try:
        if isinstance(default, bool):
            low = text.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return low in ("1", "true", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ConfigError(f"{where} (from environment): expected "
                          f"{type(default).__name__}, got {text!r}") from None
    return text


def load_config(path: str | None = None, env: dict | None = None) -> dict:
    """Defaults <- TOML file <- environment, validated. Returns a plain dict."""
    env = os.environ if env is None else env
    cfg = copy.deepcopy(DEFAULTS)
    raw: dict = {}
    if path:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for section, values in raw.items():
        if section == "bots":
            continue
        if section not in cfg:
            raise ConfigError(f"unknown section [{section}]; known: {sorted(cfg)} and [[bots]]")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}]: expected a table")
        for key, value in values.items():
            if key not in cfg[section]:
                raise ConfigError(f"{section}.{key}: unknown key; known: "
                                  f"{sorted(cfg[section])}")
            cfg[section][key] = _check_type(f"{section}.{key}", cfg[section][key], value)
    for section, values in cfg.items():
        for key, default in list(values.items()):
            name = f"TGFLEET_{section.upper()}_{key.upper()}"
            if name in env and not isinstance(default, dict):
                values[key] = _parse_env(f"{section}.{key}", default, env[name])
    for (section, key), choices in CHOICES.items():
        if cfg[section][key] not in choices:
            raise ConfigError(f"{section}.{key}: expected one of {list(choices)}, "
                              f"got {cfg[section][key]!r}")
    for section, key in PORT_KEYS:
        port = cfg[section][key]
        if not 0 <= port <= 65535:
            raise ConfigError(f"{section}.{key}: expected a port 0-65535, got {port}")
    for (section, key), (low, high) in RANGES.items():
        if not low <= cfg[section][key] <= high:
            raise ConfigError(f"{section}.{key}: expected {_bound(low)} to {_bound(high)}, "
                              f"got {cfg[section][key]!r}")
    try:
        affinity.parse(cfg["system"]["cpu_affinity"])
    except affinity.AffinityError as exc:
        raise ConfigError(f"system.cpu_affinity: {exc}") from None
    _check_placement(cfg["system"])
    data_dir = cfg["system"]["data_dir"]
    cfg["store"]["path"] = cfg["store"]["path"] or os.path.join(data_dir, "tgfleet.db")
    cfg["control"]["token_file"] = (cfg["control"]["token_file"]
                                    or os.path.join(data_dir, "admin.token"))
    bots = raw.get("bots", [])
    if not isinstance(bots, list):
        raise ConfigError("bots: expected an array of tables ([[bots]])")
    seen = set()
    cfg["bots"] = []
    for i, bot in enumerate(bots):
        if not isinstance(bot, dict):
            raise ConfigError(f"bots[{i}]: expected a table")
        checked = validate_bot(bot, where=f"bots[{i}]", base=cfg["system"]["base"])
        if checked["name"] in seen:
            raise ConfigError(f"bots[{i}].name: duplicate bot name {checked['name']!r}")
        seen.add(checked["name"])
        cfg["bots"].append(checked)
    return cfg


def _check_placement(sysc: dict) -> None:
    host, convention = sysc["host"], sysc["convention"]
    if host and not BOT_NAME.match(host):
        raise ConfigError(f"system.host: expected 1-32 chars of a-z 0-9 _ - , got {host!r}")
    if convention:
        try:
            parse_convention(convention)
        except ValueError as exc:
            raise ConfigError(f"system.convention: {exc}") from None
    if (host or convention) and sysc["base"] != "processes":
        raise ConfigError("system.host / system.convention: several hosts need "
                          "system.base = 'processes' (thespian conventions)")


def validate_bot(bot: dict, where: str = "bot", base: str | None = None) -> dict:
    """Check and normalize one bot definition (from the config file or `ctl create`); with
    `base` (the fleet's system.base), also that the fleet can run it."""
    if not isinstance(bot, dict):
        raise ConfigError(f"{where}: expected a table/object")
    out = dict(BOT_DEFAULTS)
    out.update(bot)
    name = out.get("name")
    if not isinstance(name, str) or not BOT_NAME.match(name):
        raise ConfigError(f"{where}.name: expected 1-32 chars of a-z 0-9 _ - (starting with a "
                          f"letter or digit), got {name!r}")
    if out["library"] not in LIBRARIES:
        raise ConfigError(f"{where}.library: expected one of {list(LIBRARIES)}, "
                          f"got {out['library']!r}")
    if out["account_kind"] not in ACCOUNT_KINDS:
        raise ConfigError(f"{where}.account_kind: expected one of {list(ACCOUNT_KINDS)}, "
                          f"got {out['account_kind']!r}")
    if out["account_kind"] == "bot":
        if not isinstance(out.get("token"), str) or not TOKEN.match(out["token"]):
            raise ConfigError(f"{where}.token: expected a bot token like '123456:ABC-DEF...', "
                              f"got {out.get('token')!r}")
    else:
        if not isinstance(out.get("phone"), str) or not PHONE.match(out["phone"]):
            raise ConfigError(f"{where}.phone: expected a phone number like '+15551234567', "
                              f"got {out.get('phone')!r}")
    if isinstance(out["api_id"], bool) or not isinstance(out["api_id"], int) \
            or out["api_id"] <= 0:
        raise ConfigError(f"{where}.api_id: expected a positive integer, got {out['api_id']!r}")
    if not isinstance(out["api_hash"], str) or not re.fullmatch(r"[0-9a-f]{32}",
                                                                 out["api_hash"]):
        raise ConfigError(f"{where}.api_hash: expected 32 hex characters")
    handlers = out["handlers"]
    if not isinstance(handlers, list) or not handlers:
        raise ConfigError(f"{where}.handlers: expected a non-empty list of tables")
    for j, h in enumerate(handlers):
        if not isinstance(h, dict) or not isinstance(h.get("type"), str) or not h["type"]:
            raise ConfigError(f"{where}.handlers[{j}]: expected a table with a 'type' "
                              f"(echo, autoreply, forward, relay or a dotted path)")
    for key in ("dedup_size", "queue_max", "max_in_flight", "update_backlog_high"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 10_000_000:
            raise ConfigError(f"{where}.{key}: expected an integer 1..10000000, got {v!r}")
    low = out["update_backlog_low"]
    if isinstance(low, bool) or not isinstance(low, int) or \
            not 0 <= low < out["update_backlog_high"]:
        raise ConfigError(f"{where}.update_backlog_low: expected an integer from 0 to below "
                          f"update_backlog_high ({out['update_backlog_high']}), got {low!r}")
    host = out.get("host", "")
    if not isinstance(host, str) or (host and not BOT_NAME.match(host)):
        raise ConfigError(f"{where}.host: expected the name of a member host (a-z 0-9 _ -, "
                          f"as its system.host), got {host!r}")
    if host and base is not None and base != "processes":
        raise ConfigError(f"{where}.host: placing a bot on host {host!r} needs "
                          "system.base = 'processes' (thespian conventions)")
    if not isinstance(out["enabled"], bool):
        raise ConfigError(f"{where}.enabled: expected true or false")
    if not isinstance(out["fast_updates"], bool):
        raise ConfigError(f"{where}.fast_updates: expected true or false, got "
                          f"{out['fast_updates']!r}")
    server = out.get("server")
    if server is not None:
        if not isinstance(server, dict) or not isinstance(server.get("host"), str) \
                or not isinstance(server.get("port"), int):
            raise ConfigError(f"{where}.server: expected {{host = '...', port = N, "
                              f"rsa_public_key = '...PEM...'}}")
    return out
