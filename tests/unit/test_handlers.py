import logging
import math
import textwrap

import pytest

from actors.handlers import (BUILTIN, AutoReplyHandler, EchoHandler, ForwardHandler, Handler,
                             HandlerContext, RelayHandler, load_handler)
from messages.telegram import ForwardMessages, MediaRef, SendText
from system.ttlstate import TTLState

SELF = 999


@pytest.fixture
def ctx():
    return HandlerContext(bot="b1", self_id=SELF, state=TTLState(60, 100), now=100.0,
                          log=logging.getLogger("test.handlers"))


def assert_caused_by(actions, update):
    assert actions, "expected at least one action"
    for a in actions:
        assert a.origin == update.update_id and a.received_at == update.received_at


# ---- echo ---------------------------------------------------------------------------------

def test_echo_private_text(ctx, make_msg):
    m = make_msg(chat_id=42, text="hi there", message_id=7)
    out = EchoHandler({"prefix": "echo: "}).handle(m, ctx)
    assert out == [SendText(chat_id=42, text="echo: hi there", reply_to=7,
                            origin="42:7", received_at=1234.5)]
    assert_caused_by(out, m)


@pytest.mark.parametrize("kw", [
    {"chat_id": -100, "chat_kind": "group"},
    {"chat_id": -1001, "chat_kind": "channel"},
    {"outgoing": True},
    {"sender_id": SELF},
    {"text": ""},                                                     # no text, no media
    {"text": "", "media": MediaRef(kind="photo", file_id="x")},       # media without caption
])
def test_echo_ignores(ctx, make_msg, kw):
    assert EchoHandler({}).handle(make_msg(**kw), ctx) == []


def test_echo_bad_prefix():
    with pytest.raises(ValueError, match="prefix"):
        EchoHandler({"prefix": 5})


# ---- autoreply ----------------------------------------------------------------------------

RULES = {"rules": [
    {"match": "price", "reply": "Prices: see /prices ({first_word})"},
    {"match": r"^/start\b", "regex": True, "reply": "Welcome!"},
    {"match": "HELP", "ignore_case": True, "reply": "You wrote: {text}"},
    {"match": "deploy", "reply": "group only", "chats": [-100]},
    {"match": "p", "reply": "never reached for 'price' (first match wins)"},
], "default": "Sorry, I did not understand {text}"}


@pytest.mark.parametrize("text,reply", [
    ("what is the price?", "Prices: see /prices (what)"),
    ("/start now", "Welcome!"),
    ("I need help", "You wrote: I need help"),
    ("zzz", "Sorry, I did not understand zzz"),
    ("hop", "never reached for 'price' (first match wins)"),
])
def test_autoreply_rules_in_order(ctx, make_msg, text, reply):
    m = make_msg(chat_id=5, text=text)
    out = AutoReplyHandler(RULES).handle(m, ctx)
    assert [a.text for a in out] == [reply]
    assert out[0].chat_id == 5 and out[0].reply_to == m.message_id
    assert_caused_by(out, m)


def test_autoreply_groups_only_by_explicit_chats(ctx, make_msg):
    h = AutoReplyHandler(RULES)
    assert [a.text for a in h.handle(make_msg(chat_id=-100, chat_kind="group",
                                              text="deploy now", sender_id=3), ctx)] \
        == ["group only"]
    # rules without `chats`, and the default reply, do not fire in groups
    assert h.handle(make_msg(chat_id=-100, chat_kind="group", text="price", sender_id=3),
                    ctx) == []
    assert h.handle(make_msg(chat_id=-200, chat_kind="group", text="zzz", sender_id=3), ctx) == []
    # a group rule does not fire in a private chat
    assert [a.text for a in h.handle(make_msg(chat_id=5, text="deploy"), ctx)] == \
        ["never reached for 'price' (first match wins)"]


def test_autoreply_placeholders_are_not_format_strings(ctx, make_msg):
    h = AutoReplyHandler({"rules": [{"match": "x", "reply": "{0} {text} {unknown} {{"}]})
    out = h.handle(make_msg(text="x {first_word} {0}"), ctx)
    assert out[0].text == "{0} x {first_word} {0} {unknown} {{"


def test_autoreply_ignores_own_and_empty(ctx, make_msg):
    h = AutoReplyHandler(RULES)
    assert h.handle(make_msg(text="price", outgoing=True), ctx) == []
    assert h.handle(make_msg(text="price", sender_id=SELF), ctx) == []
    assert h.handle(make_msg(text=""), ctx) == []


@pytest.mark.parametrize("config,msg", [
    ({"rules": [{"match": "ok", "reply": "r"}, {"match": "(", "regex": True, "reply": "r"}]},
     r"rule 1: invalid regex '\('"),
    ({"rules": [{"match": "ok"}]}, "rule 0: 'reply'"),
    ({"rules": [{"reply": "r"}]}, "rule 0: 'match'"),
    ({"rules": ["just a string"]}, "rule 0: must be a dict"),
    ({"rules": [{"match": "a", "reply": "r", "chats": ["x"]}]}, "rule 0: 'chats'"),
    ({"rules": {"match": "a"}}, "'rules' must be a list"),
    ({"rules": []}, "at least one rule"),
    ({"default": ""}, "'default'"),
])
def test_autoreply_bad_config(config, msg):
    with pytest.raises(ValueError, match=msg):
        AutoReplyHandler(config)


# ---- forward ------------------------------------------------------------------------------

FWD = {"sources": [-1001], "targets": [-2001, -2002], "group_window_s": 0.5}


def channel_post(make_msg, **kw):
    kw.setdefault("chat_id", -1001)
    kw.setdefault("chat_kind", "channel")
    kw.setdefault("sender_id", -1001)
    return make_msg(**kw)


def test_forward_single_message_to_every_target(ctx, make_msg):
    h = ForwardHandler(FWD)
    m = channel_post(make_msg, message_id=10)
    out = h.handle(m, ctx)
    assert out == [ForwardMessages(from_chat_id=-1001, message_ids=(10,), to_chat_id=-2001,
                                   origin=m.update_id, received_at=m.received_at),
                   ForwardMessages(from_chat_id=-1001, message_ids=(10,), to_chat_id=-2002,
                                   origin=m.update_id, received_at=m.received_at)]


def test_forward_ignores_other_chats_own_and_empty(ctx, make_msg):
    h = ForwardHandler(FWD)
    assert h.handle(make_msg(chat_id=-3000, chat_kind="group"), ctx) == []
    assert h.handle(channel_post(make_msg, outgoing=True), ctx) == []
    assert h.handle(channel_post(make_msg, text=""), ctx) == []          # service message
    assert h.stats()["skipped_empty"] == 1
    media_only = channel_post(make_msg, text="", media=MediaRef(kind="photo"))
    assert len(h.handle(media_only, ctx)) == 2


def test_forward_never_forwards_a_redelivered_message_twice(ctx, make_msg):
    h = ForwardHandler(FWD)
    first = channel_post(make_msg, message_id=10)
    again = channel_post(make_msg, message_id=10, update_id="redelivered")
    assert len(h.handle(first, ctx)) == 2
    assert h.handle(again, ctx) == []
    assert h.stats()["duplicates"] == 1


def test_forward_media_group_is_one_forward_per_target(ctx, make_msg):
    h = ForwardHandler(FWD)
    parts = [channel_post(make_msg, message_id=mid, grouped_id=77, text="",
                          media=MediaRef(kind="photo")) for mid in (21, 20, 22)]
    assert not h.needs_tick()
    for i, part in enumerate(parts):
        ctx.now = 100.0 + i * 0.2
        assert h.handle(part, ctx) == []
    assert h.needs_tick()                                # an album waits for its window
    assert h.handle(parts[1], ctx) == []                 # redelivered part: not added twice
    assert h.tick(ctx.now + 0.49, ctx) == []             # window counts from the LAST part
    out = h.tick(ctx.now + 0.5, ctx)
    assert out == [ForwardMessages(from_chat_id=-1001, message_ids=(20, 21, 22), to_chat_id=t,
                                   origin=parts[0].update_id, received_at=parts[0].received_at)
                   for t in (-2001, -2002)]
    assert h.tick(ctx.now + 10, ctx) == [] and not h.needs_tick()
    st = h.stats()
    assert st["groups_flushed"] == 1 and st["pending_groups"] == 0 and st["forwarded"] == 2


def test_forward_bounded_buffer_drops_whole_albums(ctx, make_msg, caplog):
    h = ForwardHandler({**FWD, "max_pending_groups": 2})
    for gid in (1, 2):
        h.handle(channel_post(make_msg, grouped_id=gid), ctx)
    with caplog.at_level(logging.WARNING):
        assert h.handle(channel_post(make_msg, grouped_id=3), ctx) == []
    assert "buffer full" in caplog.text
    h.tick(math.inf, ctx)                                # flush 1 and 2
    assert h.handle(channel_post(make_msg, grouped_id=3), ctx) == []   # tail of dropped album
    st = h.stats()
    assert st["dropped_groups"] == 1 and st["dropped_messages"] == 2
    assert st["pending_groups"] == 0 and st["groups_flushed"] == 2


@pytest.mark.parametrize("config,msg", [
    ({"sources": [-1], "targets": [-1]}, "both source and target"),
    ({"sources": [-1], "targets": []}, "'targets'"),
    ({"sources": "-1", "targets": [-2]}, "'sources'"),
    ({"targets": [-2]}, "'sources'"),
    ({"sources": [-1], "targets": [-2], "group_window_s": -1}, "group_window_s"),
    ({"sources": [-1], "targets": [-2], "max_pending_groups": 0}, "max_pending_groups"),
])
def test_forward_bad_config(config, msg):
    with pytest.raises(ValueError, match=msg):
        ForwardHandler(config)


# ---- relay --------------------------------------------------------------------------------

PEER = 5555


def test_relay_round_trip_in_fifo_order(ctx, make_msg):
    h = RelayHandler({"peer": PEER, "timeout_s": 60})
    q1, q2 = make_msg(chat_id=1, text="q1"), make_msg(chat_id=2, text="q2")
    assert not h.needs_tick()
    out1 = h.handle(q1, ctx)
    assert h.needs_tick()            # a question waits for its answer or its timeout
    assert out1 == [SendText(chat_id=PEER, text="q1", origin=q1.update_id,
                             received_at=q1.received_at)]
    h.handle(q2, ctx)
    a1 = make_msg(chat_id=PEER, text="a1", received_at=2000.0)
    a2 = make_msg(chat_id=PEER, text="a2")
    out = h.handle(a1, ctx) + h.handle(a2, ctx)
    assert [(a.chat_id, a.text) for a in out] == [(1, "a1"), (2, "a2")]
    assert out[0].origin == a1.update_id and out[0].received_at == 2000.0
    assert h.stats()["answered"] == 2 and h.pending() == 0 and not h.needs_tick()


def test_relay_timeout_and_unmatched(ctx, make_msg):
    h = RelayHandler({"peer": PEER, "timeout_s": 10})
    ctx.now = 100.0
    h.handle(make_msg(chat_id=1, text="old"), ctx)
    ctx.now = 105.0
    h.handle(make_msg(chat_id=2, text="newer"), ctx)
    assert h.tick(110.0, ctx) == [] and h.pending() == 2       # exactly timeout: kept
    h.tick(110.5, ctx)
    assert h.pending() == 1 and h.stats()["expired"] == 1
    ctx.now = 200.0                                            # the answer comes far too late
    assert h.handle(make_msg(chat_id=PEER, text="late"), ctx) == []
    st = h.stats()
    assert st["expired"] == 2 and st["unmatched"] == 1 and st["answered"] == 0


def test_relay_bounded_pending(ctx, make_msg):
    h = RelayHandler({"peer": PEER, "max_pending": 2})
    for chat in (1, 2, 3):
        h.handle(make_msg(chat_id=chat), ctx)
    assert h.pending() == 2 and h.stats()["overflow"] == 1
    out = h.handle(make_msg(chat_id=PEER, text="a"), ctx)
    assert out[0].chat_id == 2                                 # 1 was pushed out


def test_relay_ignores_groups_own_and_empty(ctx, make_msg):
    h = RelayHandler({"peer": PEER})
    assert h.handle(make_msg(chat_id=-7, chat_kind="group"), ctx) == []
    assert h.handle(make_msg(outgoing=True), ctx) == []
    assert h.handle(make_msg(text=""), ctx) == []
    assert h.pending() == 0


@pytest.mark.parametrize("config,msg", [({}, "peer"), ({"peer": "x"}, "peer"),
                                        ({"peer": 1, "timeout_s": 0}, "timeout_s"),
                                        ({"peer": 1, "max_pending": 0}, "max_pending")])
def test_relay_bad_config(config, msg):
    with pytest.raises(ValueError, match=msg):
        RelayHandler(config)


# ---- loading ------------------------------------------------------------------------------

def test_builtins_load():
    assert set(BUILTIN) == {"echo", "autoreply", "forward", "relay"}
    assert isinstance(load_handler("echo", {}), EchoHandler)
    assert isinstance(load_handler("relay", {"peer": 3}), RelayHandler)
    assert load_handler("echo", {"name": "echo2"}).name == "echo2"


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    (tmp_path / "tgf_custom_handlers.py").write_text(textwrap.dedent("""
        from actors.handlers.base import Handler, caused_by
        from messages.telegram import SendText

        class Shout(Handler):
            name = "shout"
            def handle(self, update, ctx):
                return [SendText(chat_id=update.chat_id, text=update.text.upper(),
                                 **caused_by(update))]

        class NotAHandler:
            pass

        not_a_class = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tgf_custom_handlers"


@pytest.mark.parametrize("sep", [":", "."])
def test_custom_handler_by_dotted_path(custom_module, ctx, make_msg, sep):
    h = load_handler(f"{custom_module}{sep}Shout", {})
    assert h.name == "shout"
    assert h.handle(make_msg(text="hey"), ctx)[0].text == "HEY"


@pytest.mark.parametrize("spec,msg", [
    ("nope", "unknown handler 'nope'"),
    ("", "non-empty"),
    ("no_such_module_xyz:Thing", "cannot import module"),
    ("tgf_custom_handlers:Missing", "has no attribute 'Missing'"),
    ("tgf_custom_handlers:NotAHandler", "not a subclass"),
    ("tgf_custom_handlers.not_a_class", "not a subclass"),
    ("collections:OrderedDict", "not a subclass"),
    (":Shout", "bad handler path"),
])
def test_load_handler_errors(custom_module, spec, msg):
    with pytest.raises(ValueError, match=msg):
        load_handler(spec, {})


def test_handler_config_must_be_a_dict():
    with pytest.raises(ValueError, match="config must be a dict"):
        EchoHandler(["prefix"])


def test_base_handler_defaults(ctx, make_msg):
    h = Handler({})
    with pytest.raises(NotImplementedError):
        h.handle(make_msg(), ctx)
    assert h.tick(0.0, ctx) == [] and h.on_event("t", {}, ctx) == []
    assert h.subscriptions() == () and h.stats() == {}
    assert not h.needs_tick()      # nothing time-based: the bot does not tick for it


def test_a_handler_that_overrides_only_tick_is_ticked_all_the_time():
    class Clock(Handler):
        def tick(self, now, ctx):
            return []
    assert Clock({}).needs_tick()
