"""The bot with the fleet's shared services: events between bots through the EventBus, dedup
that survives a restart through the store, a store that does not answer, a bot whose handler
config is invalid failing alone; and the EventBus's own rules."""
import time

from actors.bot import DEDUP_RECORD_S
from messages.backend import BusEvent, PublishEvent, SubscribeTopics, UnsubscribeAll
from messages.lifecycle import TEMPORARY, ChildCommand, ChildCommandResult
from tests.bots.helpers import assert_accounting, group_spec, msg

ECHO = [{"type": "echo"}]
PUBSUB = [{"type": "tests.bots.pubsub_handlers:Announce", "topic": "news"},
          {"type": "tests.bots.pubsub_handlers:Notify", "topic": "news", "chat": 900}]


def test_publish_subscribe_between_two_bots(bot_tree):
    tree = bot_tree([group_spec("a", PUBSUB), group_spec("b", PUBSUB)])
    tree.inject("a", [msg("a", 10, 1, "hello from a")])
    tree.wait_sends("b", 1)
    tree.inject("b", [msg("b", 20, 1, "hello from b")])
    tree.wait_sends("a", 1)
    # each bus delivery to a bot is FIFO: had `a` heard its own event, its answer would be
    # at a's backend before the answer to b's later event
    assert [(x.action.chat_id, x.action.text) for x in tree.sends("a")] == \
        [(900, "b: hello from b")]
    assert [(x.action.chat_id, x.action.text) for x in tree.sends("b")] == \
        [(900, "a: hello from a")]
    for g in ("a", "b"):
        s = tree.settle(g)
        assert s["published"] == 1 and s["events_in"] == 1 and s["sent"] == 1
        assert s["handler_errors"] == {}
        assert_accounting(s)
    bus = tree.service_stats("eventbus")
    assert bus["published"] == {"news": 2} and bus["delivered"] == 2 and bus["subscribers"] == 2


def test_invalid_handler_config_fails_that_bot_only(bot_tree):
    bad = {"bad_rule": [{"type": "autoreply", "rules": [{"match": "", "reply": "x"}]}],
           "bad_path": [{"type": "no_such_pkg.mod:Handler"}],
           "bad_ctor": [{"type": "tests.support.bad_handlers:BadConfig"}]}
    groups = [group_spec("good", ECHO)] + [group_spec(name, handlers, restart=TEMPORARY,
                                                      intensity=1)
                                           for name, handlers in bad.items()]
    tree = bot_tree(groups)
    st = tree.wait(lambda: (lambda st: st if all(st[f"root/{n}"].state == "failed"
                                                 for n in bad) else None)(tree.status()),
                   what="the bad groups failed")
    expected = {"bad_rule": "handlers[0] ('autoreply'): autoreply rule 0: 'match' must be a "
                            "non-empty string",
                "bad_path": "handlers[0] ('no_such_pkg.mod:Handler'): handler "
                            "'no_such_pkg.mod:Handler': cannot import module 'no_such_pkg.mod'",
                "bad_ctor": "handlers[0] ('tests.support.bad_handlers:BadConfig'): KeyError"}
    for name, text in expected.items():
        err = st[f"root/{name}"].last_error
        assert f"bot {name}: {text}" in err, err
    assert st["root/good"].state == "running" and st["root/good/bot"].state == "running"
    tree.inject("good", [msg("good", 100, 1, "still here")])
    assert tree.wait_sends("good", 1)[0].action.text == "still here"


def restart_bot(tree, name):
    """Restart NAME's bot actor and wait until the new one is there."""
    before = tree.child(name, "bot")
    tree.restart(name, "bot")
    tree.wait(lambda: (lambda a: a is not None and a != before)(tree.child(name, "bot")),
              what="bot restarted")


def answer_restart_redeliver(tree):
    """Three messages answered, the bot restarted, the three redelivered (as GetDifference
    does after a restart) plus one new: exactly one more answer. Returns the bot's stats."""
    batch = [msg("alpha", 100 + i, 1, f"m{i}") for i in range(3)]
    tree.inject("alpha", batch)
    tree.wait_sends("alpha", 3)
    restart_bot(tree, "alpha")
    tree.inject("alpha", batch + [msg("alpha", 200, 1, "new")])
    tree.wait_sends("alpha", 4)
    s = tree.settle("alpha")
    assert len(tree.sends("alpha")) == 4
    return s


def test_store_dedup_survives_a_bot_restart(bot_tree, tmp_path):
    tree = bot_tree([group_spec("alpha", ECHO)], store=str(tmp_path / "fleet.db"))
    # the new incarnation loaded the 3 recorded keys into its LRU at start: no round trip
    s = answer_restart_redeliver(tree)
    assert s["dedup_keys_loaded"] == 3 and s["dedup_warm"] == "complete"
    assert s["dedup_hits"] == 3 and s["store_dedup_hits"] == 0 and s["sent"] == 1
    assert s["store_dedup_fallbacks"] == 0
    # and a redelivery within one life is caught by the in-memory LRU
    tree.inject("alpha", [msg("alpha", 200, 1, "new")])
    tree.wait(lambda: tree.stats("alpha")["dedup_hits"] == 4, what="LRU dedup hit")
    assert len(tree.sends("alpha")) == 4


def test_more_recorded_keys_than_the_lru_holds_ask_the_store(bot_tree, tmp_path):
    """dedup_size 2 < 3 recorded keys: the 2 newest are loaded, but the LRU cannot vouch for
    everything, so the redelivered (old) messages go through the per-batch DedupCheck: three
    store hits, and only the new message is answered."""
    tree = bot_tree([group_spec("alpha", ECHO, dedup_size=2)],
                    store=str(tmp_path / "fleet.db"))
    s = answer_restart_redeliver(tree)
    assert s["dedup_keys_loaded"] == 2 and s["dedup_warm"] == "partial"
    assert s["store_dedup_hits"] == 3 and s["dedup_hits"] == 3 and s["sent"] == 1


def test_store_that_does_not_answer_falls_back_to_memory(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO, store_timeout_s=0.3)], store="silent")
    batch = [msg("alpha", 100, 1, "a"), msg("alpha", 101, 1, "b")]
    tree.inject("alpha", batch)
    tree.wait_sends("alpha", 2)
    tree.inject("alpha", batch + [msg("alpha", 102, 1, "c")])
    tree.wait_sends("alpha", 3)
    s = tree.settle("alpha")
    # the recent-keys load at start, then each batch's DedupCheck, time out
    assert s["store_dedup_fallbacks"] == 3 and s["dedup_hits"] == 2 and s["sent"] == 3
    assert s["dedup_warm"] == "partial"


def test_store_that_keeps_failing_is_not_asked_for_a_while(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO, store_timeout_s=0.2, store_breaker_failures=2,
                                store_breaker_reset_s=60)], store="silent")
    for i in range(4):
        tree.inject("alpha", [msg("alpha", 100 + i, 1, f"m{i}")])
        tree.wait_sends("alpha", i + 1)
    s = tree.settle("alpha")
    # two failures (the recent-keys load, the first batch) open the breaker; then no asking
    assert s["store_dedup_fallbacks"] == 2 and s["store_dedup_skipped"] == 3
    assert s["store_breaker"] == "open" and s["sent"] == 4


def test_one_dedup_record_in_flight_while_the_store_has_not_confirmed(bot_tree):
    """The store does not confirm the first record: the keys of the later answers wait for it
    instead of going out as a record each (which fed a busy store faster than it answered)."""
    tree = bot_tree([group_spec("alpha", ECHO, store_timeout_s=0.2)], store="silent")
    for i in range(3):
        tree.inject("alpha", [msg("alpha", 100 + i, 1, f"m{i}")])
        tree.wait_sends("alpha", i + 1)
        time.sleep(DEDUP_RECORD_S + 0.05)   # without the window each key is its own record
    s = tree.wait(lambda: (lambda s: s if s["dedup_keys_waiting"] == 2 else None)(
        tree.stats("alpha")), what="two keys waiting behind the unconfirmed record")
    assert s["dedup_records_in_flight"] == 1 and s["sent"] == 3


def _next_event(fleet, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fleet.listen(max(0.0, deadline - time.monotonic()))
        if isinstance(got, BusEvent):
            return got
    return None


def test_eventbus_routes_by_topic_and_stays_bounded(fleet, bot_tree):
    tree = bot_tree([], eventbus={"max_subscribers": 1, "max_topics_per_subscriber": 2})
    bus = tree.service("eventbus")
    fleet.tell(bus, SubscribeTopics("ext", ("a", "b", "c")))        # 3 topics: refused
    fleet.tell(bus, SubscribeTopics("ext", ("a", "*")))
    fleet.tell(bus, SubscribeTopics("other", ("a",)))               # 2nd subscriber: refused
    fleet.tell(bus, PublishEvent("zzz", {"n": 1}, "src"))           # via '*'
    fleet.tell(bus, PublishEvent("a", {"n": 2}, "ext"))             # own event: not echoed
    fleet.tell(bus, PublishEvent("a", {"n": 3}, "src"))
    got = [_next_event(fleet), _next_event(fleet)]
    assert [(e.topic, e.payload["n"], e.source) for e in got] == [("zzz", 1, "src"),
                                                                  ("a", 3, "src")]
    fleet.tell(bus, UnsubscribeAll("ext"))
    fleet.tell(bus, PublishEvent("a", {"n": 4}, "src"))
    c = tree.wait(lambda: (lambda c: c if c["published_total"] == 4 else None)(
        tree.service_stats("eventbus")))
    assert c["refused"] == 2 and c["subscribers"] == 0 and c["topics"] == 0
    assert c["delivered"] == 2 and c["no_subscribers"] == 2
    assert c["published"] == {"zzz": 1, "a": 3}


def test_bots_follow_restarted_services(bot_tree):
    """A restarted limiter or bus has a new address: the root's EnvUpdate reaches the bots,
    which then ask the new limiter and re-subscribe at the new bus."""
    tree = bot_tree([group_spec("a", PUBSUB), group_spec("b", PUBSUB)])
    old = {n: tree.service(n) for n in ("ratelimit", "eventbus")}
    for name in ("ratelimit", "eventbus"):
        r = tree.ask(tree.root, ChildCommand("restart", name, tree.rid()), ChildCommandResult)
        assert r.ok
    tree.wait(lambda: all(tree.service(n) not in (None, old[n]) for n in old),
              what="services restarted")
    tree.wait(lambda: tree.service_stats("eventbus")["subscribers"] == 2,
              what="bots re-subscribed at the new bus")
    tree.inject("a", [msg("a", 10, 1, "after restart")])
    assert tree.wait_sends("b", 1)[0].action.text == "a: after restart"
    assert tree.service_stats("ratelimit")["granted_total"] >= 1


def test_bot_limiter_and_bus_report_their_metrics(bot_tree):
    from tests.bots.tree import GetReports, Reports
    tree = bot_tree([group_spec("a", PUBSUB + [{"type": "tests.support.bad_handlers:Raising"},
                                                {"type": "echo"}], queue_max=1),
                     group_spec("b", PUBSUB)], metrics=True)
    tree.inject("a", [msg("a", 10, 1, "boom"), msg("a", 10, 2, "two")])
    tree.wait_sends("b", 2)
    tree.wait_sends("a", 1)
    bot = (("bot", "a"),)
    A_PUBLISHED = bot + (("action", "publish"), ("result", "ok"))

    def reports():
        r = tree.ask(tree.service("metrics"), GetReports(tree.rid()), Reports).samples
        wanted = [("root/a/bot", ("tgfleet_bot_updates_total", bot), 2),
                  ("root/a/bot", ("tgfleet_bot_queue_drops_total", bot), 1),
                  ("root/a/bot", ("tgfleet_bot_actions_total", A_PUBLISHED), 2),
                  ("root/b/bot", ("tgfleet_bot_queue_depth", (("bot", "b"),)), 0),
                  ("root/ratelimit", ("tgfleet_ratelimit_grants_total", (("bot", "b"),)), 2),
                  ("root/eventbus", ("tgfleet_eventbus_published_total",
                                     (("topic", "news"),)), 2)]
        return r if all(r.get(src, {}).get(key) == n for src, key, n in wanted) else None
    r = tree.wait(reports, what="metrics reports with the traffic")
    a = r["root/a/bot"]
    assert a[("tgfleet_bot_actions_total", bot + (("action", "send_message"),
                                                  ("result", "rejected")))] == 1
    # attempt outcomes (ok/error/...) and e2e latency are the backend's to count
    assert not [k for k in a if k[0] == "tgfleet_e2e_latency_seconds"]
    assert a[("tgfleet_bot_handler_errors_total", bot + (("handler", "raising"),))] == 1
    assert a[("tgfleet_bot_queue_depth", bot)] == 0
    assert a[("tgfleet_bot_queue_drops_total", bot)] == 1       # 2 echoes, room for 1
    assert ("tgfleet_bot_last_update_age_seconds", bot) in a
