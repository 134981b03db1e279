"""Handlers for the publish/subscribe test (loaded by dotted path inside the bot actors).

`Announce` publishes every private text message to a topic; `Notify` subscribes to that topic
and sends each event's text into one chat. A bot with both must never hear its own events."""
from __future__ import annotations

from actors.handlers.base import Handler, caused_by, is_from_self
from messages.telegram import Publish, SendText


class Announce(Handler):
    name = "announce"

    def handle(self, update, ctx):
        if not update.text or is_from_self(update, ctx):
            return []
        return [Publish(topic=self.config.get("topic", "news"),
                        payload={"text": update.text, "bot": ctx.bot}, **caused_by(update))]


class Notify(Handler):
    name = "notify"

    def handle(self, update, ctx):
        return []

    def subscriptions(self):
        return (self.config.get("topic", "news"),)

    def on_event(self, topic, payload, ctx):
        return [SendText(chat_id=int(self.config["chat"]),
                         text=f"{payload.get('bot')}: {payload.get('text')}")]
