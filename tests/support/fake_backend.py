"""FakeBackend: a STAND-IN for the real backend actor (actors/backends/), for the bot tests only.

It speaks the real bot <-> backend protocol of `messages/backend.py` and nothing more, so the
bot is tested against the contract, not against Telethon, Pyrogram or TDLib:
- `AttachBot` from the bot: remember its address, answer `BackendState(connected, authorized,
  self_id)`.
- `ActionBatch`: record every action with the monotonic time it arrived, then answer ONE
  `ActionResults` per batch (ok with a fresh message id, or an error a test asked for).
Test controls (each answered with `Ack`/`Records` to the sender, so tests can `ask`):
- `Inject(updates, bot)`: send `UpdateBatch(bot, updates)` to the attached bot (`Ack.ok` is
  False when no bot, or not the bot at address `bot`, is attached yet).
- `FailNext(error_kind, count, flood_wait_s, chat_id)`: the next `count` actions (into
  `chat_id`, or any chat when None) fail with that error kind.
- `Hold(True)`: keep results back (the bot sees its actions stay in flight); `Hold(False)`
  releases them.
- `GetRecords(since)`: the recorded sends from index `since` on, and the update keys the bot
  reported finished (`UpdatesDone`), in order.
- With `report_floods`, a flood_wait answer is also reported to env['ratelimit'] as a
  `FloodWaitReport`, as the real backend does.
Args: bot ("" = whatever the attaching bot is called), self_id (999), max_records (100000),
report_floods (False).
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

from actors.base import FleetActor
from messages.backend import (ActionBatch, ActionResult, ActionResults, AttachBot, BackendState,
                              FloodWaitReport, UpdatesDone)
from messages.telegram import UpdateBatch, action_chat


@dataclass(frozen=True)
class Inject:
    """`bot`: when given, inject only if that address is the attached bot (a restarted bot
    attaches anew; injecting into its dead predecessor would lose the batch)."""
    updates: tuple
    bot: object = None
    request_id: str = ""


@dataclass(frozen=True)
class FailNext:
    error_kind: str                # flood_wait | network | timeout | rpc_fatal | peer_invalid
    count: int = 1
    flood_wait_s: float = 0.0
    chat_id: Optional[int] = None
    request_id: str = ""


@dataclass(frozen=True)
class Hold:
    hold: bool
    request_id: str = ""


@dataclass(frozen=True)
class GetRecords:
    since: int = 0
    request_id: str = ""


@dataclass(frozen=True)
class Ack:
    request_id: str
    ok: bool = True


@dataclass(frozen=True)
class Sent:
    """One action as the stand-in saw it: `t` is time.monotonic() on arrival, `ok` whether it
    was answered with success."""
    t: float
    action_id: str
    action: object
    chat_id: Optional[int]
    ok: bool
    error_kind: str = ""


@dataclass(frozen=True)
class Records:
    request_id: str
    sends: tuple                   # tuple[Sent, ...] from `since`
    total: int                     # records ever made (index of the next one)
    batches: int
    attached: bool
    held: int
    finished: tuple = ()           # update keys the bot reported finished, in order


class FakeBackend(FleetActor):
    kind = "backend"

    def on_start(self, args):
        self.bot_name = args.get("bot", "")
        self.self_id = int(args.get("self_id", 999))
        self.bot = None
        self.records: deque = deque(maxlen=int(args.get("max_records", 100_000)))
        self.total = 0
        self.batches = 0
        self.rules: list = []          # [error_kind, remaining, flood_wait_s, chat_id]
        self.holding = False
        self.held: list = []           # ActionResult kept back while holding
        self.msg_ids = itertools.count(1)
        self.report_floods = bool(args.get("report_floods", False))
        self.finished: list = []

    def on_AttachBot(self, msg: AttachBot, sender):
        self.bot = sender
        self.bot_name = self.bot_name or msg.bot
        self.send(sender, BackendState(msg.bot, True, True, "ready", self.self_id, "fake"))

    def _failure(self, chat_id):
        for rule in self.rules:
            if rule[1] > 0 and (rule[3] is None or rule[3] == chat_id):
                rule[1] -= 1
                return rule
        return None

    def on_ActionBatch(self, msg: ActionBatch, sender):
        self.batches += 1
        now = time.monotonic()
        results = []
        for action_id, action in msg.items:
            chat = action_chat(action)
            rule = self._failure(chat)
            if rule is None:
                res = ActionResult(action_id, True, message_ids=(next(self.msg_ids),),
                                   sent_at=time.time())
            else:
                res = ActionResult(action_id, False, rule[0], f"stand-in {rule[0]}",
                                   flood_wait_s=rule[2])
                limiter = self.env.get("ratelimit")
                if rule[0] == "flood_wait" and self.report_floods and limiter is not None:
                    self.send(limiter, FloodWaitReport(msg.bot, chat, "", rule[2]))
            self.records.append(Sent(now, action_id, action, chat, res.ok, res.error_kind))
            self.total += 1
            results.append(res)
        self.rules = [r for r in self.rules if r[1] > 0]
        if self.holding:
            self.held.extend(results)
        else:
            self.send(sender, ActionResults(msg.bot, tuple(results)))

    def on_UpdatesDone(self, msg: UpdatesDone, sender):
        self.finished.extend(msg.keys)

    # ---- test controls ---------------------------------------------------------------------
    def on_Inject(self, msg: Inject, sender):
        if self.bot is None or (msg.bot is not None and msg.bot != self.bot):
            self.send(sender, Ack(msg.request_id, False))
            return
        self.send(self.bot, UpdateBatch(self.bot_name, tuple(msg.updates)))
        self.send(sender, Ack(msg.request_id, True))

    def on_FailNext(self, msg: FailNext, sender):
        self.rules.append([msg.error_kind, int(msg.count), float(msg.flood_wait_s), msg.chat_id])
        self.send(sender, Ack(msg.request_id, True))

    def on_Hold(self, msg: Hold, sender):
        self.holding = msg.hold
        if not msg.hold and self.held and self.bot is not None:
            self.send(self.bot, ActionResults(self.bot_name, tuple(self.held)))
            self.held = []
        self.send(sender, Ack(msg.request_id, True))

    def on_GetRecords(self, msg: GetRecords, sender):
        first = self.total - len(self.records)        # index of the oldest record kept
        start = max(0, msg.since - first)
        sends = tuple(self.records)[start:]
        self.send(sender, Records(msg.request_id, sends, self.total, self.batches,
                                  self.bot is not None, len(self.held), tuple(self.finished)))
