"""The bot's bounded queue and its config checks, without actors: FIFO per chat, fair sharing
of the in-flight room, retries back at the front, every action accounted for."""
import pytest

from actors.bot import Outbox, build_handlers, parse_config
from messages.backend import ActionResult
from messages.telegram import SendText
from system.retry import RetryPolicy


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def text(chat, n):
    return SendText(chat_id=chat, text=str(n))


def outbox(queue_max=10, max_in_flight=4, **retry):
    clock = Clock()
    ob = Outbox(queue_max, max_in_flight, RetryPolicy(jitter=0.0, **retry), "x-", clock)
    return ob, clock


def accounted(ob):
    c = ob.counters()
    return c["accepted"] == c["sent"] + c["published"] + c["dropped"] + c["in_queue"] + \
        c["in_flight"] + c["retry_pending"]


def test_bounded_and_fifo_per_chat():
    ob, _ = outbox(queue_max=3)
    assert [ob.offer(text(1, i), 1) for i in range(5)] == [True, True, True, False, False]
    assert ob.dropped == {"queue_full": 2} and ob.queued == 3 and accounted(ob)
    assert [i.action.text for i in ob.take(1, 5)] == ["0", "1", "2"]
    assert ob.queued == 0 and ob.queues == {}


def test_wants_shares_the_room_over_chats_and_rotates():
    ob, _ = outbox(queue_max=100, max_in_flight=4)
    for chat in (1, 2, 3):
        for i in range(5):
            ob.offer(text(chat, i), chat)
    assert ob.wants(100) == {1: 5, 2: 5, 3: 5}
    w = ob.wants(4)
    assert sum(w.values()) == 4 and set(w) == {1, 2, 3} and max(w.values()) == 2
    firsts = {next(iter(ob.wants(2))) for _ in range(3)}
    assert firsts == {1, 2, 3}          # the start chat rotates: nobody is always left out
    assert ob.wants(0) == {}


def test_results_retry_at_the_front_and_drop_with_reasons():
    ob, clock = outbox(base_s=1.0, max_attempts=2)
    for i in range(3):
        ob.offer(text(7, i), 7)
    batch = ob.launch(ob.take(7, 2))
    (a0, _), (a1, _) = batch
    assert ob.complete(ActionResult(a0, False, "flood_wait", flood_wait_s=5.0)) == \
        ("retry", ob.retry_heap[0][2], "flood_wait")
    assert ob.next_retry_at() == pytest.approx(105.0)     # the server's wait, not base_s
    assert ob.complete(ActionResult(a1, False, "peer_invalid"))[0::2] == ("drop", "peer_invalid")
    assert ob.complete(ActionResult("nope", True))[0] == "unknown" and ob.late_results == 1
    clock.t = 104.0
    assert ob.requeue_due(clock.t) == 0
    clock.t = 105.0
    assert ob.requeue_due(clock.t) == 1
    assert [i.action.text for i in ob.queues[7]] == ["0", "2"]     # the retry goes first
    (a2, act), = ob.launch(ob.take(7, 1))
    assert act.text == "0" and a2 != a0                           # fresh id per attempt
    assert ob.complete(ActionResult(a2, False, "network"))[0::2] == ("drop", "retries_exhausted")
    assert ob.complete(ActionResult(a2, True))[0] == "unknown"     # already decided
    assert accounted(ob)
    assert ob.dropped == {"peer_invalid": 1, "retries_exhausted": 1}


def test_unknown_error_kind_is_a_drop_and_stop_drops_everything_counted():
    ob, _ = outbox()
    for i in range(4):
        ob.offer(text(i, i), i)
    (aid, _), = ob.launch(ob.take(0, 1))
    assert ob.complete(ActionResult(aid, False, "weird"))[0::2] == ("drop", "unknown_error")
    ob.launch(ob.take(1, 1))
    assert ob.overdue(ob.clock() + 1, 0.5) == ["x-2"]
    lost = ob.drop_all()
    assert lost == {"stopped": 2, "stopped_in_flight": 1} and accounted(ob)
    assert ob.counters()["in_queue"] == ob.counters()["in_flight"] == 0


@pytest.mark.parametrize("args,error", [
    ({}, "'name' must be a non-empty string"),
    ({"name": "b", "account_kind": "robot"}, "'account_kind' must be 'bot' or 'user'"),
    ({"name": "b", "handlers": {"type": "echo"}}, "'handlers' must be a list"),
    ({"name": "b", "queue_max": 0}, "'queue_max' must be an int >= 1"),
    ({"name": "b", "tick_s": "fast"}, "'tick_s' must be a number"),
    ({"name": "b", "retry": {"max_attempts": 0}}, "bad 'retry' config"),
    ({"name": "b", "retry": {"nope": 1}}, "bad 'retry' config"),
])
def test_config_errors_name_the_key(args, error):
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        parse_config(args)


def test_handler_errors_name_the_bot_and_the_entry():
    with pytest.raises(ValueError, match=r"bot b: handlers\[1\] must be a dict with a 'type'"):
        build_handlers("b", [{"type": "echo"}, "echo"])
    with pytest.raises(ValueError, match=r"bot b: handlers\[0\] \('echo'\): echo: prefix"):
        build_handlers("b", [{"type": "echo", "prefix": 3}])
    assert [h.name for h in build_handlers("b", [{"type": "echo", "name": "e1"}])] == ["e1"]
    assert parse_config({"name": "b"})["queue_max"] == 1000
