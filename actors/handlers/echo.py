"""EchoHandler: answers a private text message with the same text (plus an optional prefix).

Why: the simplest useful handler; it is the end-to-end probe of the fleet (update in, action
out, latency measured from `received_at`) and the benchmark workload.
"""
from __future__ import annotations

from messages.telegram import SendText

from .base import Handler, caused_by, is_from_self


class EchoHandler(Handler):
    name = "echo"

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        prefix = self.config.get("prefix", "")
        if not isinstance(prefix, str):
            raise ValueError(f"echo: prefix must be a string, got {type(prefix).__name__}")
        self.prefix = prefix

    def handle(self, update, ctx):
        if update.chat_kind != "private" or not update.text or is_from_self(update, ctx):
            return []
        return [SendText(chat_id=update.chat_id, text=self.prefix + update.text,
                         reply_to=update.message_id, **caused_by(update))]
