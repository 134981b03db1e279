"""AutoReplyHandler: answers messages that match configured rules.

Config:
    {"rules": [{"match": "hello", "regex": false, "ignore_case": false,
                "reply": "Hi! You said {text}", "chats": [123, -100456]}, ...],
     "default": "optional reply when no rule matches"}

The first matching rule wins. `match` is a substring, or a regex searched anywhere in the text
when `regex` is true. `reply` may use {text} (the whole message) and {first_word}; only those two
placeholders are substituted (plain replacement, not str.format, so other braces in a reply are
left alone and user text can never inject format fields).

Where rules apply: a rule with `chats` applies only in those chats (private or group). A rule
without `chats`, and the `default` reply, apply in private chats only: answering every matching
message in a group would spam it and burn its 20 msg/min budget, so groups must be opted in by id.

Config errors (bad regex, missing keys) raise ValueError at construction, naming the rule index,
so a broken config fails when the bot starts, not on the first message.
"""
from __future__ import annotations

import re

from messages.telegram import SendText

from .base import Handler, caused_by, is_from_self


class _Rule:
    __slots__ = ("index", "needle", "pattern", "reply", "chats")

    def __init__(self, index: int, spec) -> None:
        where = f"autoreply rule {index}"
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: must be a dict, got {type(spec).__name__}")
        match = spec.get("match")
        if not isinstance(match, str) or not match:
            raise ValueError(f"{where}: 'match' must be a non-empty string, got {match!r}")
        reply = spec.get("reply")
        if not isinstance(reply, str) or not reply:
            raise ValueError(f"{where}: 'reply' must be a non-empty string, got {reply!r}")
        ignore_case = bool(spec.get("ignore_case", False))
        self.index = index
        self.reply = reply
        self.pattern = None
        self.needle = None
        if spec.get("regex", False):
            try:
                self.pattern = re.compile(match, re.IGNORECASE if ignore_case else 0)
            except re.error as exc:
                raise ValueError(f"{where}: invalid regex {match!r}: {exc}") from exc
        else:
            self.needle = (match.casefold(), True) if ignore_case else (match, False)
        chats = spec.get("chats")
        if chats is None:
            self.chats = None
        else:
            if not isinstance(chats, (list, tuple, set, frozenset)) or not all(
                    isinstance(c, int) and not isinstance(c, bool) for c in chats):
                raise ValueError(f"{where}: 'chats' must be a list of chat ids, got {chats!r}")
            self.chats = frozenset(chats)

    def applies(self, chat_id: int, chat_kind: str) -> bool:
        return chat_kind == "private" if self.chats is None else chat_id in self.chats

    def matches(self, text: str) -> bool:
        if self.pattern is not None:
            return self.pattern.search(text) is not None
        needle, folded = self.needle
        return needle in (text.casefold() if folded else text)


_PLACEHOLDER = re.compile(r"\{(text|first_word)\}")


def render(template: str, text: str) -> str:
    """Substitute {text} and {first_word} in one pass (user text is never re-scanned)."""
    words = text.split()
    values = {"text": text, "first_word": words[0] if words else ""}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


class AutoReplyHandler(Handler):
    name = "autoreply"

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        rules = self.config.get("rules", [])
        if not isinstance(rules, (list, tuple)):
            raise ValueError(f"autoreply: 'rules' must be a list, got {type(rules).__name__}")
        self.rules = [_Rule(i, spec) for i, spec in enumerate(rules)]
        default = self.config.get("default")
        if default is not None and (not isinstance(default, str) or not default):
            raise ValueError(f"autoreply: 'default' must be a non-empty string, got {default!r}")
        self.default = default
        if not self.rules and self.default is None:
            raise ValueError("autoreply: config needs at least one rule or a 'default' reply")

    def handle(self, update, ctx):
        if not update.text or is_from_self(update, ctx):
            return []
        reply = None
        for rule in self.rules:
            if rule.applies(update.chat_id, update.chat_kind) and rule.matches(update.text):
                reply = rule.reply
                break
        if reply is None:
            if self.default is None or update.chat_kind != "private":
                return []
            reply = self.default
        return [SendText(chat_id=update.chat_id, text=render(reply, update.text),
                         reply_to=update.message_id, **caused_by(update))]
