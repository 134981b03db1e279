"""Custom handlers that misbehave on purpose, loaded by dotted path like any user's handler
('tests.support.bad_handlers:Raising'). The bot must count their failures and keep going, and
a handler whose config is bad must stop the bot at start with a readable error."""
from __future__ import annotations

from actors.handlers.base import Handler


class Raising(Handler):
    """Raises on every message whose text contains config["trigger"] ("boom" by default), and on
    every tick when config["tick_raises"] is true; answers nothing otherwise."""

    name = "raising"

    def __init__(self, config=None):
        super().__init__(config)
        self.trigger = self.config.get("trigger", "boom")
        self.tick_raises = bool(self.config.get("tick_raises", False))

    def handle(self, update, ctx):
        if self.trigger in (update.text or ""):
            raise RuntimeError(f"handler bug triggered by {update.update_id}")
        return []

    def tick(self, now, ctx):
        if self.tick_raises:
            raise RuntimeError("tick bug")
        return []


class BadConfig(Handler):
    """Its constructor rejects any config without "required" with a non-ValueError, as a careless
    custom handler would."""

    name = "badconfig"

    def __init__(self, config=None):
        super().__init__(config)
        if "required" not in self.config:
            raise KeyError("required")

    def handle(self, update, ctx):
        return []
