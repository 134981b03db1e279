import logging

import pytest

from actors.handlers import load_handler
from actors.handlers.base import Handler, caused_by
from actors.handlers.pipeline import Pipeline
from messages.telegram import ForwardMessages, MediaRef, Publish, SendText


class Boom(Handler):
    name = "boom"

    def handle(self, update, ctx):
        raise RuntimeError("handler bug")

    def tick(self, now, ctx):
        raise RuntimeError("tick bug")


class Tag(Handler):
    """Returns one SendText tagged with its config, forgetting origin on purpose."""
    name = "tag"

    def handle(self, update, ctx):
        return [SendText(chat_id=update.chat_id, text=self.config["tag"])]


class Garbage(Handler):
    name = "garbage"

    def handle(self, update, ctx):
        return self.config["result"]


class Counter_(Handler):
    """Counts messages per user in ctx.state and publishes an event."""
    name = "counter"

    def handle(self, update, ctx):
        n = ctx.state.get(update.sender_id).get("n", 0) + 1
        ctx.state.update(update.sender_id, n=n)
        return [Publish(topic="count", payload={"user": update.sender_id, "n": n},
                        **caused_by(update))]


class Listener(Handler):
    name = "listener"

    def __init__(self, config):
        super().__init__(config)
        self.seen = []

    def subscriptions(self):
        return tuple(self.config.get("topics", ("alerts",)))

    def handle(self, update, ctx):
        return []

    def on_event(self, topic, payload, ctx):
        if payload.get("explode"):
            raise ValueError("bad payload")
        self.seen.append((topic, payload))
        return [SendText(chat_id=payload["chat"], text=f"{topic}: {payload['text']}")]


def pipeline(handlers, **kw):
    kw.setdefault("clock", lambda: 500.0)
    return Pipeline("b1", 999, handlers, **kw)


def test_dedup_on_update_id(make_msg):
    p = pipeline([load_handler("echo", {})])
    m = make_msg(text="hi")
    assert len(p.process(m)) == 1
    assert p.process(m) == []
    st = p.stats()
    assert st["updates"] == 2 and st["dedup_hits"] == 1 and st["actions"] == {"SendText": 1}


def test_dedup_is_bounded(make_msg):
    p = pipeline([], dedup_size=10)
    for i in range(100):
        p.process(make_msg(message_id=i))
    assert p.stats()["dedup_size"] == 10


def test_handlers_run_in_order_and_origin_is_filled_in(make_msg):
    p = pipeline([Tag({"tag": "first"}), load_handler("echo", {}), Tag({"tag": "last"})])
    m = make_msg(chat_id=8, text="x")
    out = p.process(m)
    assert [a.text for a in out] == ["first", "x", "last"]
    assert all(a.origin == m.update_id and a.received_at == m.received_at for a in out)


def test_raising_handler_is_isolated_logged_and_counted(make_msg, caplog):
    p = pipeline([Boom({}), load_handler("echo", {})])
    with caplog.at_level(logging.ERROR):
        out1 = p.process(make_msg(text="one"))
        out2 = p.process(make_msg(text="two"))
    assert [a.text for a in out1 + out2] == ["one", "two"]      # echo still ran, twice
    assert p.stats()["handler_errors"] == {"boom": 2}
    records = [r for r in caplog.records if "handler boom failed" in r.getMessage()]
    assert len(records) == 2 and "bot b1" in records[0].getMessage()
    assert records[0].exc_info is not None                      # traceback kept


@pytest.mark.parametrize("result,errors,kept", [
    (None, 0, 0),
    ("not a list", 1, 0),
    ([SendText(chat_id=1, text="ok"), "junk", 42], 2, 1),
    ((SendText(chat_id=1, text="tuple ok"),), 0, 1),
])
def test_bad_handler_results_are_dropped_and_counted(make_msg, result, errors, kept):
    p = pipeline([Garbage({"result": result})])
    out = p.process(make_msg())
    assert len(out) == kept
    assert p.stats()["handler_errors"].get("garbage", 0) == errors


def test_update_without_text_or_media_passes_through_every_builtin(make_msg):
    handlers = [load_handler("echo", {}),
                load_handler("autoreply", {"default": "?"}),
                load_handler("forward", {"sources": [-1001], "targets": [-2]}),
                load_handler("relay", {"peer": 77})]
    p = pipeline(handlers)
    for kw in ({"chat_id": 5}, {"chat_id": -1001, "chat_kind": "channel"},
               {"chat_id": 77}, {"chat_id": -9, "chat_kind": "group"}):
        assert p.process(make_msg(text="", **kw)) == []
    assert p.stats()["handler_errors"] == {}


def test_tick_flushes_media_groups_and_isolates_errors(make_msg):
    now = [100.0]
    fwd = load_handler("forward", {"sources": [-1001], "targets": [-2], "group_window_s": 0.5})
    p = pipeline([Boom({}), fwd], clock=lambda: now[0])
    for mid in (1, 2):
        p.process(make_msg(chat_id=-1001, chat_kind="channel", message_id=mid, grouped_id=9,
                           text="", media=MediaRef(kind="photo")))
    assert p.tick(100.2) == []
    out = p.tick(100.6)
    assert out == [ForwardMessages(from_chat_id=-1001, message_ids=(1, 2), to_chat_id=-2,
                                   origin="-1001:1", received_at=1234.5)]
    assert p.stats()["handler_errors"] == {"boom": 4}          # 2 updates + 2 ticks
    assert p.stats()["actions"] == {"ForwardMessages": 1}
    assert p.stats()["handlers"]["forward"]["groups_flushed"] == 1


def test_events_reach_only_subscribers():
    alerts = Listener({})
    everything = Listener({"name": "all", "topics": ["*"]})
    other = Listener({"name": "other", "topics": ["news"]})
    p = pipeline([alerts, everything, other])
    assert set(p.subscriptions()) == {"alerts", "*", "news"}
    out = p.on_event("alerts", {"chat": 3, "text": "disk"})
    assert [a.text for a in out] == ["alerts: disk", "alerts: disk"]
    assert alerts.seen and everything.seen and not other.seen
    assert p.on_event("alerts", {"explode": True}) == []
    assert p.stats()["handler_errors"] == {"listener": 1, "all": 1}


def test_state_via_context_and_cleanup(make_msg, clock):
    p = pipeline([Counter_({})], state_ttl_s=60, state_max=100, state_clock=clock)
    for _ in range(3):
        out = p.process(make_msg(chat_id=1, sender_id=1))
    p.process(make_msg(chat_id=2, sender_id=2))
    assert out[0].payload == {"user": 1, "n": 3}
    assert p.stats()["state_size"] == 2
    assert p.cleanup()["expired_states"] == 0
    clock.advance(61)
    report = p.cleanup()
    assert report["expired_states"] == 2 and report["state"]["size"] == 0
    assert p.process(make_msg(chat_id=1, sender_id=1))[0].payload["n"] == 1


def test_rejects_non_handlers():
    with pytest.raises(ValueError, match="not a Handler"):
        Pipeline("b1", 0, [object()])


def test_pipeline_needs_tick_only_while_a_handler_has_time_based_work(make_msg):
    echo = load_handler("echo", {})
    assert not Pipeline("b", 1, [echo]).needs_tick()
    assert Pipeline("b", 1, [echo, Boom({})]).needs_tick()   # overrides tick: always ticked

    class BrokenNeedsTick(Handler):
        def needs_tick(self):
            raise RuntimeError("needs_tick bug")
    p = Pipeline("b", 1, [BrokenNeedsTick({})])
    assert p.needs_tick() and p.handler_errors      # a bug there errs on the side of ticking
