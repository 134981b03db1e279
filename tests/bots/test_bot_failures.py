"""What happens to actions that cannot go at once or fail: a full queue, FLOOD_WAIT, invalid
peers, network errors, exhausted retries; and the accounting that proves none is lost."""
from collections import Counter

import pytest

from tests.bots.helpers import assert_accounting, group_spec, msg

ECHO = [{"type": "echo"}]


def attempts_by_chat(tree, group):
    return Counter(s.chat_id for s in tree.records(group).sends)


def test_full_queue_refuses_new_actions_with_a_counted_drop(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO, queue_max=3, max_in_flight=1)])
    tree.hold("alpha", True)
    tree.inject("alpha", [msg("alpha", 100 + i, 1, f"m{i}") for i in range(10)])
    s = tree.wait(lambda: (lambda s: s if s["accepted"] == 10 and s["in_flight"] == 1
                           else None)(tree.stats("alpha")))
    # one batch: 3 fit, 7 refused; one of the 3 went out (max_in_flight=1), 2 wait
    assert s["dropped_by_reason"] == {"queue_full": 7} and s["in_queue"] == 2
    assert_accounting(s)
    tree.hold("alpha", False)
    s = tree.settle("alpha")
    assert s["sent"] == 3 and s["dropped"] == 7
    assert_accounting(s)
    assert sorted(x.action.chat_id for x in tree.sends("alpha")) == [100, 101, 102]


@pytest.mark.parametrize("limiter", [True, False], ids=["limiter", "no_limiter"])
def test_flood_wait_is_reported_and_retried_later(bot_tree, limiter):
    """With a limiter its penalty holds the chat too; without one the bot's own retry delay
    alone must respect the server's wait."""
    backend = {"report_floods": True}      # as the real backend does: the limiter gets two
    tree = bot_tree([group_spec("alpha", ECHO, backend=backend)],
                    limits=None if limiter else "none")
    tree.fail_next("alpha", "flood_wait", 1, flood_wait_s=1.0)
    tree.inject("alpha", [msg("alpha", 100, 1, "hi")])
    tree.wait_sends("alpha", 1)
    recs = tree.records("alpha").sends
    assert [(r.ok, r.error_kind) for r in recs] == [(False, "flood_wait"), (True, "")]
    assert recs[0].action == recs[1].action and recs[0].action_id != recs[1].action_id
    assert recs[1].t - recs[0].t >= 1.0           # never before the server's wait
    s = tree.settle("alpha")
    assert s["sent"] == 1 and s["retries"] == 1 and s["dropped"] == 0
    if not limiter:
        assert s["grant_requests"] == 0
        return
    lim = tree.wait(lambda: (lambda c: c if c["flood_waits"].get("alpha") == 1 else None)(
        tree.service_stats("ratelimit")), what="FloodWaitReport counted by the limiter")
    assert lim["penalty_seconds"]["alpha"] >= 1.0
    assert lim["duplicate_flood_reports"] == 1      # one event, reported by backend and bot


def test_peer_invalid_is_dropped_at_once_with_its_reason(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO)])
    tree.fail_next("alpha", "peer_invalid", 1, chat_id=100)
    tree.inject("alpha", [msg("alpha", 100, 1, "a"), msg("alpha", 101, 1, "b")])
    tree.wait_sends("alpha", 1)
    s = tree.settle("alpha")
    assert s["dropped_by_reason"] == {"peer_invalid": 1} and s["sent"] == 1 and s["retries"] == 0
    assert attempts_by_chat(tree, "alpha") == {100: 1, 101: 1}


def test_every_outcome_is_accounted_for(bot_tree):
    """accepted == sent + published + dropped once everything settled: queue full, flood wait,
    network errors until retries run out, fatal errors, invalid peers, events published."""
    handlers = ECHO + [{"type": "tests.bots.pubsub_handlers:Announce", "topic": "log"}]
    tree = bot_tree([group_spec("alpha", handlers, queue_max=5, max_in_flight=2,
                                retry={"base_s": 0.05, "max_s": 0.2, "max_attempts": 2})])
    tree.fail_next("alpha", "peer_invalid", 1, chat_id=301)
    tree.fail_next("alpha", "flood_wait", 1, flood_wait_s=0.2, chat_id=302)
    tree.fail_next("alpha", "network", 5, chat_id=303)
    tree.fail_next("alpha", "rpc_fatal", 1, chat_id=304)
    tree.fail_next("alpha", "timeout", 1, chat_id=305)
    tree.inject("alpha", [msg("alpha", 301 + i, 1, f"m{i}") for i in range(10)])
    s = tree.settle("alpha")
    assert_accounting(s)
    assert s["accepted"] == 20 and s["published"] == 10
    assert s["dropped_by_reason"] == {"queue_full": 5, "peer_invalid": 1,
                                      "retries_exhausted": 1, "rpc_fatal": 1}
    assert s["sent"] == 2 and s["retries"] == 3    # 302 (flood), 305 (timeout), 303 once
    ok = sorted(x.action.chat_id for x in tree.sends("alpha"))
    assert ok == [302, 305], ok
    assert attempts_by_chat(tree, "alpha") == {301: 1, 302: 2, 303: 2, 304: 1, 305: 2}


def test_missing_result_counts_as_timeout_and_late_result_is_ignored(bot_tree):
    """A result that does not come is a timeout, and the one that comes late is ignored. The
    timer that looks for it runs only while actions are in flight: an idle bot keeps none, and
    the next action sent starts it again."""
    tree = bot_tree([group_spec("alpha", ECHO, result_timeout_s=0.3)])
    tree.inject("alpha", [msg("alpha", 100, 1, "hi")])
    assert tree.settle("alpha")["sent"] == 1
    tree.wait(lambda: not tree.stats("alpha")["watching_flight"], what="idle: no flight timer")
    tree.hold("alpha", True)
    tree.inject("alpha", [msg("alpha", 101, 2, "again")])
    tree.wait(lambda: tree.stats("alpha")["retries"] >= 1, what="retry after no result")
    tree.wait(lambda: tree.records("alpha").total >= 3, what="second attempt at the backend")
    tree.hold("alpha", False)
    s = tree.settle("alpha")
    assert s["sent"] == 2 and s["late_results"] >= 1 and s["dropped"] == 0
    assert_accounting(s)


def test_silent_rate_limiter_means_no_sends_but_no_loss(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO, grant_timeout_s=0.1)], limits="silent")
    tree.inject("alpha", [msg("alpha", 100, 1, "hi")])
    s = tree.wait(lambda: (lambda s: s if s["grant_timeouts"] >= 2 else None)(
        tree.stats("alpha")), what="grant requests timing out")
    assert s["sent"] == 0 and s["in_queue"] == 1 and s["grant_requests"] >= 3
    assert_accounting(s)
    assert tree.records("alpha").total == 0


def test_an_update_is_reported_finished_only_once_its_actions_are_done(bot_tree):
    """The backend keeps an update for the bot's successor until the bot reports it finished
    (`UpdatesDone`): an echo held in flight is not finished; an update that causes no action
    is finished at once; the held one is finished when its result arrives."""
    tree = bot_tree([group_spec("alpha", ECHO)])
    tree.hold("alpha", True)
    tree.inject("alpha", [msg("alpha", 100, 1, "answer me"), msg("alpha", 101, 2, "")])
    tree.wait(lambda: "101:2" in tree.records("alpha").finished, what="101:2 finished")
    tree.wait(lambda: tree.records("alpha").held == 1, what="the echo held in flight")
    assert "100:1" not in tree.records("alpha").finished
    tree.hold("alpha", False)
    finished = tree.wait(lambda: (lambda f: f if "100:1" in f else None)(
        tree.records("alpha").finished), what="100:1 finished")
    assert sorted(finished) == ["100:1", "101:2"]       # each reported once
