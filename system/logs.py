"""Logging: plain text or JSON lines, a level per component, one field per actor and bot.

Actor loggers are named `tgfleet.<kind>.<child id>` (see actors/base.py), so the JSON formatter
can split the name into `component` and `actor`, and a bot's name is the child id of its group
(`tgfleet.backend.backend` lives under path root/bots/<bot>/backend: the bot field comes from
the record's `bot` attribute when an actor sets one, else from the logger name).
On the processes base these definitions are handed to thespian, whose logger process applies
them for every actor process (the formatter is importable there: same package).
"""
from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = record.name.split(".")
        doc = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "component": parts[1] if len(parts) > 1 and parts[0] == "tgfleet" else parts[0],
            "actor": parts[2] if len(parts) > 2 and parts[0] == "tgfleet" else "",
            "msg": record.getMessage(),
            "pid": record.process,
        }
        bot = getattr(record, "bot", None)
        if bot:
            doc["bot"] = bot
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def log_defs_of(cfg: dict) -> dict:
    """`log_defs` for a validated config's [log] section (launcher and member alike)."""
    logs = cfg["log"]
    return log_defs(logs["level"], logs["json"], logs["file"], logs["levels"])


def log_defs(level: str = "INFO", json_lines: bool = False, file: str = "",
             levels: dict | None = None) -> dict:
    """A logging.config dict for the whole system (main process and thespian's logger)."""
    # thespian sets every actor process's root logger to the lowest level found in these
    # definitions, and ships every record at or above it to its logger process: the handler's
    # level must be the lowest level asked for, never a blanket DEBUG.
    order = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    lowest = min([level] + list((levels or {}).values()), key=order.index)
    handler: dict = {"class": "logging.StreamHandler", "level": lowest}
    if file:
        handler = {"class": "logging.FileHandler", "filename": file, "level": lowest}
    handler["formatter"] = "json" if json_lines else "plain"
    handler["filters"] = ["deathsig"]
    loggers = {name: {"level": lvl} for name, lvl in (levels or {}).items()}
    loggers.setdefault("telethon", {"level": "WARNING"})
    loggers.setdefault("pyrogram", {"level": "WARNING"})
    loggers.setdefault("asyncio", {"level": "WARNING"})
    loggers.setdefault("aiosqlite", {"level": "WARNING"})
    return {
        "version": 1,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
            "json": {"()": "system.logs.JsonFormatter"},
        },
        "filters": {"deathsig": {"()": "system.procguard.DeathSignalFilter"}},
        "handlers": {"main": handler},
        "loggers": loggers,
        "root": {"handlers": ["main"], "level": level},
        "disable_existing_loggers": False,
    }
