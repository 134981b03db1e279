"""Test-only actors and fakes for the backend tests.

`BackendProbe` plays "the bot" next to a backend in a BotGroup: it attaches (AttachBot), keeps
everything the backend sends it (UpdateBatch, ActionResults, BackendState) and, started at top
level, stands in for the rate limiter (FloodWaitReport). Tests drive it with `SendActions` and
read it with `Collect`; passed as env['metrics'] it keeps the latest MetricsReport of each
source. With args {'echo': True} it answers every text it gets, like an echo bot; with
{'ack': True} too it reports each update finished (UpdatesDone) as soon as it answered it.

`fake_tdjson_factory` is the `tdjson_factory` for TdlibBackend in tests: it builds a
`ScriptedFakeTdJson` (the named FAKE of TDLib's JSON interface, tests/fakes/fake_tdjson.py) and
registers it in `FAKES` by bot name, so an in-process test can drive it directly; a script in
the backend's args (chats, messages to inject after login, a flood on the n-th send) covers the
processes base, where the fake lives in the backend's process.
"""
from __future__ import annotations

from dataclasses import dataclass

from actors.base import FleetActor
from messages.backend import ActionBatch, AttachBot, UpdatesDone
from messages.telegram import SendText, update_key
from tests.fakes.fake_tdjson import FakeTdJson


@dataclass(frozen=True)
class Collect:
    pass


@dataclass(frozen=True)
class Collected:
    updates: tuple
    results: tuple
    states: tuple
    floods: tuple
    backend_found: bool
    metrics: tuple = ()       # the latest MetricsReport of each source


@dataclass(frozen=True)
class SendActions:
    """items: tuple of (action_id, action), sent to the backend as one ActionBatch."""
    items: tuple


@dataclass(frozen=True)
class Sent:
    count: int


@dataclass(frozen=True)
class AttachNow:
    """Attach now (for a probe started with {'attach': False}); answered with Sent(1)."""


class BackendProbe(FleetActor):
    kind = "bot"

    def on_start(self, args):
        self.bot = args.get("bot", self.child_id)
        self.backend = self.env.get(args.get("backend_key", "sibling.backend"))
        self.echo = bool(args.get("echo", False))
        self.ack = bool(args.get("ack", False))
        self.updates: list = []
        self.results: list = []
        self.states: list = []
        self.floods: list = []
        self.metrics: dict = {}
        self.echoed = 0
        if self.backend is not None and args.get("attach", True):
            self.send(self.backend, AttachBot(self.bot))

    def on_UpdateBatch(self, msg, sender):
        self.updates.extend(msg.updates)
        if self.echo and self.backend is not None:
            items = []
            for update in msg.updates:
                if update.text:
                    self.echoed += 1
                    items.append((f"echo-{self.echoed}", SendText(
                        origin=update.update_id, received_at=update.received_at,
                        chat_id=update.chat_id, text="echo " + update.text,
                        reply_to=update.message_id)))
            if items:
                self.send(self.backend, ActionBatch(self.bot, tuple(items)))
            if self.ack:
                self.send(self.backend, UpdatesDone(self.bot, tuple(map(update_key,
                                                                        msg.updates))))

    def on_ActionResults(self, msg, sender):
        self.results.extend(msg.results)

    def on_BackendState(self, msg, sender):
        self.states.append(msg)

    def on_FloodWaitReport(self, msg, sender):
        self.floods.append(msg)

    def on_MetricsReport(self, msg, sender):
        self.metrics[msg.source] = msg

    def on_SendActions(self, msg, sender):
        if self.backend is not None:
            self.send(self.backend, ActionBatch(self.bot, tuple(msg.items)))
        self.send(sender, Sent(len(msg.items) if self.backend is not None else 0))

    def on_AttachNow(self, msg, sender):
        if self.backend is not None:
            self.send(self.backend, AttachBot(self.bot))
        self.send(sender, Sent(1 if self.backend is not None else 0))

    def on_Collect(self, msg, sender):
        self.send(sender, Collected(tuple(self.updates), tuple(self.results),
                                    tuple(self.states), tuple(self.floods),
                                    self.backend is not None, tuple(self.metrics.values())))


# ---- TDLib: the named fake, scripted -----------------------------------------------------------

FAKES: dict[str, "ScriptedFakeTdJson"] = {}


class ScriptedFakeTdJson(FakeTdJson):
    """FakeTdJson plus a script that runs once after the first login: announce `chats`
    ([chat_id, kind]) and inject `inject` ([chat_id, text, sender_id]); `flood_on_send`: N makes
    the N-th send fail with "retry after `flood_retry_after`"."""

    def __init__(self, script: dict):
        super().__init__(login_code=str(script.get("login_code", "12345")))
        self.script = dict(script)
        self.sends = 0
        self._scripted = False

    def _login(self, client, me):
        super()._login(client, me)
        if self._scripted:
            return
        self._scripted = True
        for chat_id, kind in self.script.get("chats", ()):
            self.add_chat(client.id, int(chat_id), kind)
        for chat_id, text, sender_id in self.script.get("inject", ()):
            self.inject_message(client.id, int(chat_id), text=text, sender_id=int(sender_id))

    def _take_failure(self):
        self.sends += 1
        if self.sends == self.script.get("flood_on_send"):
            super()._take_failure()
            return int(self.script.get("flood_retry_after", 7)), "update"
        return super()._take_failure()


def fake_tdjson_factory(args: dict) -> ScriptedFakeTdJson:
    fake = ScriptedFakeTdJson(args.get("fake") or {})
    FAKES[args["name"]] = fake
    return fake
