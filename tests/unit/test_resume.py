"""The saved update state never passes a held update (system/resume.py)."""
from __future__ import annotations

from dataclasses import dataclass

from system import resume


@dataclass
class U:
    resume: tuple | None


def test_held_floors_take_the_lowest_per_scope_and_ignore_none():
    floors = resume.held_floors([U((0, 10)), U((0, 7)), U(None)], [U((555, 3)), U((555, 9))])
    assert floors == {0: 7, 555: 3}


def test_in_transit_forgets_what_the_actor_has_seen():
    t = resume.InTransit()
    t.pushed((0, 5))       # push 1
    t.pushed(None)         # push 2 (a library without resume points)
    t.pushed((0, 8))       # push 3
    assert t.floors_after(0) == {0: 5}
    assert t.floors_after(1) == {0: 8}       # push 1 reached the actor
    assert t.floors_after(3) == {}


def test_a_push_forgets_what_the_actor_has_seen_by_then():
    seen = [0]
    t = resume.InTransit(lambda: seen[0])
    t.pushed((0, 5))
    t.pushed((0, 8))
    seen[0] = 2                # the actor took both
    t.pushed((0, 9))
    assert [e[1] for e in t.entries] == [(0, 9)]


def test_in_transit_keeps_the_oldest_when_full():
    t = resume.InTransit(limit=2)
    for pts in (4, 6, 2):
        t.pushed((0, pts))
    assert [e[1] for e in t.entries] == [(0, 4), (0, 6)]
    assert t.count == 3


def test_merge_keeps_the_lower_floor():
    assert resume.merge({0: 5, 9: 2}, {0: 3, 7: 1}) == {0: 3, 9: 2, 7: 1}


def body():
    return {"state": [100, 0, 1700000000, 4], "channels": [[555, 40], [777, 12]], "x": 1}


def test_clamp_lowers_common_and_channel_state_only_downwards():
    out = resume.clamp_telethon_body(body(), {0: 90, 555: 50, 777: 10})
    assert out["state"] == [90, 0, 1700000000, 4]
    assert out["channels"] == [[555, 40], [777, 10]]
    assert out["x"] == 1


def test_clamp_adds_a_channel_with_a_floor_but_no_state():
    out = resume.clamp_telethon_body(body(), {888: 3})
    assert [888, 3] in out["channels"] and out["state"][0] == 100


def test_clamp_without_floors_or_state_changes_nothing():
    assert resume.clamp_telethon_body(body(), {}) == body()
    b = {"state": None, "channels": []}
    assert resume.clamp_telethon_body(b, {0: 5}) == {"state": None, "channels": []}


def test_telethon_resume_point_live_difference_and_channel():
    import datetime
    from types import SimpleNamespace

    from telethon.tl import types

    from actors.backends.telethon_backend import TelethonBackend
    point = TelethonBackend._resume_point
    now = datetime.datetime.now(datetime.timezone.utc)
    private = types.Message(id=7, peer_id=types.PeerUser(5), date=now, message="hi")
    post = types.Message(id=8, peer_id=types.PeerChannel(99), date=now, message="news")
    backend = SimpleNamespace(_resume_base={0: 40, 99: 12})
    # a live update: the state just before it
    assert point(backend, types.UpdateNewMessage(private, pts=51, pts_count=1), private) == (0, 50)
    assert point(backend, types.UpdateNewChannelMessage(post, pts=20, pts_count=1), post) == (99, 19)
    # fetched by GetDifference (Telethon gives pts = pts_count = 0): where this connection
    # started catching up, never 0
    assert point(backend, types.UpdateNewMessage(private, pts=0, pts_count=0), private) == (0, 40)
    assert point(backend, types.UpdateNewChannelMessage(post, pts=0, pts_count=0), post) == (99, 12)
    # nothing known: no resume point
    assert point(SimpleNamespace(_resume_base={}),
                 types.UpdateNewMessage(private, pts=0, pts_count=0), private) is None


def test_pyrogram_clamp_lowers_states_and_adds_missing_channels():
    body = {"states": [[0, 100, 3, 1700000000, 9], [-1000000000099, 40, None, None, None]]}
    out = resume.clamp_pyrogram_body(body, {0: 95, -1000000000099: 50, -1000000000777: 4})
    assert out["states"] == [[0, 95, 3, 1700000000, 9], [-1000000000099, 40, None, None, None],
                             [-1000000000777, 4, None, None, None]]
    assert resume.clamp_pyrogram_body({"states": []}, {}) == {"states": []}


def test_pyrogram_resume_point_live_recovered_and_channel():
    from types import SimpleNamespace

    from pyrogram import raw

    from actors.backends.pyrogram_backend import PyrogramBackend
    backend = SimpleNamespace(_resume_base={0: 40, -1000000000099: 12}, _recovered={})
    point = PyrogramBackend._resume_point.__get__(backend)
    private = raw.types.Message(id=7, peer_id=raw.types.PeerUser(user_id=5), date=0, message="hi")
    post = raw.types.Message(id=8, peer_id=raw.types.PeerChannel(channel_id=99), date=0,
                             message="news")
    assert point(raw.types.UpdateNewMessage(message=private, pts=51, pts_count=1)) == (0, 50)
    assert point(raw.types.UpdateNewChannelMessage(message=post, pts=20, pts_count=1)) \
        == (-1000000000099, 19)
    # recovered at start (Pyrogram gives pts_count -1): where the recovery started
    assert point(raw.types.UpdateNewMessage(message=private, pts=60, pts_count=-1)) == (0, 40)
    assert point(None) is None
    # found in review: an update about a channel without a message (a deletion) counts the
    # channel's pts, not the common one (it was given scope 0 and pulled the common pts to 7)
    deleted = raw.types.UpdateDeleteChannelMessages(channel_id=99, messages=[5], pts=8,
                                                    pts_count=1)
    assert point(deleted) == (-1000000000099, 7)


def test_in_transit_stays_small_while_the_actor_keeps_up():
    seen = [0]
    t = resume.InTransit(lambda: seen[0])
    for i in range(1, 100_001):
        t.pushed((0, i))
        seen[0] = i            # the actor took it
    assert len(t.entries) <= 1
    t.pushed((0, 7))           # one the actor has not taken yet
    assert t.floors_after(seen[0]) == {0: 7}


def test_an_export_keeps_what_the_actor_took_after_its_snapshot():
    """Found in review: the export takes its snapshot of what the actor holds (and SEEN) on the
    actor thread and reads the library's state later, on the loop thread. An update the actor
    took in between was in neither: the push after it forgot it (the actor had seen it) and
    the snapshot did not hold it yet, so the saved state passed it."""
    from types import SimpleNamespace
    from actors.backends.base import AsyncioBackend

    b = SimpleNamespace(updates_seen=10, _out_updates=[], buffered=[], unacked={})
    b.in_transit = resume.InTransit(lambda: b.updates_seen)
    for i in range(1, 11):
        b.in_transit.pushed((0, i * 10))         # 1..10: seen and finished
    b.in_transit.pushed((0, 110))                # 11, on its way
    floors = AsyncioBackend.floors_for_export(b) # snapshot: SEEN = 10, holds nothing
    b.updates_seen = 11                          # the actor takes 11; the bot has not finished
    b.unacked["c:11"] = U((0, 110))
    b.in_transit.pushed((0, 120))                # 12: this push used to forget 11
    assert floors() == {0: 110}
    body = resume.clamp_telethon_body({"state": [121, 0, 0, 0], "channels": []}, floors())
    assert body["state"][0] == 110

    floors.release()                             # the export is over: pushes forget again
    b.updates_seen = 12
    b.in_transit.pushed((0, 130))
    assert [e[1] for e in b.in_transit.entries] == [(0, 130)]


def test_pyrogram_keeps_an_update_it_is_still_applying(monkeypatch):
    """Found in review: for a short message Pyrogram stores the new pts, then asks for a
    GetDifference, and only then queues the message; an export during that request saw the
    stored pts and neither the queue nor a worker held the message."""
    import asyncio
    from types import SimpleNamespace

    from pyrogram import Client, raw

    from actors.backends import pyrogram_backend as pb

    seen_during = {}

    async def go():
        release = asyncio.Event()
        started = asyncio.Event()

        async def library_handle_updates(self, updates):     # stands in for Pyrogram's
            started.set()
            await release.wait()                               # the GetDifference request

        monkeypatch.setattr(Client, "handle_updates", library_handle_updates)
        client = object.__new__(pb._FleetPyrogramClient)
        client.fleet_applying, client._fleet_calls = {}, 0
        backend = SimpleNamespace(client=client, _resume_base={}, _recovered={},
                                  _prune_recovered=lambda: None,
                                  read_gate=SimpleNamespace(queue=SimpleNamespace(waiting=list)))
        backend._resume_point = pb.PyrogramBackend._resume_point.__get__(backend)
        short = raw.types.UpdateShortMessage(id=3, user_id=5, message="hi", pts=71, pts_count=1,
                                             date=0)
        task = asyncio.create_task(client.handle_updates(short))
        await started.wait()
        seen_during.update(pb.PyrogramBackend._library_floors(backend))
        release.set()
        await task
        return pb.PyrogramBackend._library_floors(backend)

    after = asyncio.run(go())
    assert seen_during == {0: 70}
    assert after == {}


def test_pyrogram_applying_floors_by_scope():
    from pyrogram import raw

    from actors.backends.pyrogram_backend import _applying_floors
    post = raw.types.Message(id=8, peer_id=raw.types.PeerChannel(channel_id=99), date=0,
                             message="news")
    container = raw.types.Updates(updates=[
        raw.types.UpdateNewChannelMessage(message=post, pts=20, pts_count=1),
        raw.types.UpdateDeleteChannelMessages(channel_id=99, messages=[1], pts=18, pts_count=1),
        raw.types.UpdateUserTyping(user_id=1, action=raw.types.SendMessageTypingAction())],
        users=[], chats=[], date=0, seq=0)
    assert _applying_floors(container) == {-1000000000099: 17}
    assert _applying_floors(raw.types.UpdateShort(
        update=raw.types.UpdateUserTyping(user_id=1, action=raw.types.SendMessageTypingAction()),
        date=0)) == {}


def test_telethon_messages_fetched_by_a_difference_resume_from_where_it_was_asked():
    """Found in review: a message a difference fetched has no position, and the state its
    connection started from is unknown for a channel first seen after connecting and after a
    fresh login (connect happens before sign-in): it held back no saved state. Each difference
    now marks what it returns with the state it was asked from."""
    import datetime
    import logging
    from types import SimpleNamespace

    from telethon._updates.messagebox import ENTRY_ACCOUNT
    from telethon._updates.session import ChannelState, SessionState
    from telethon.tl import functions, types

    from actors.backends.telethon_backend import TelethonBackend, _StampingMessageBox
    now = datetime.datetime.now(datetime.timezone.utc)
    box = _StampingMessageBox(logging.getLogger("test.messagebox"))
    box.load(SessionState(5, 2, True, pts=40, qts=0, date=int(now.timestamp()), seq=0,
                          takeout_id=None), [ChannelState(777, 12)])
    backend = SimpleNamespace(_resume_base={})        # a fresh login: nothing known at connect
    point = TelethonBackend._resume_point

    box.try_begin_get_diff(ENTRY_ACCOUNT, "test")
    request = box.get_difference()
    private = types.Message(id=7, peer_id=types.PeerUser(5), date=now, message="hi")
    diff = types.updates.Difference(
        new_messages=[private], new_encrypted_messages=[], other_updates=[], chats=[], users=[],
        state=types.updates.State(pts=45, qts=0, date=now, seq=0, unread_count=0))
    updates, _, _ = box.apply_difference(diff, SimpleNamespace(extend=lambda *a: None))
    fetched = [u for u in updates if isinstance(u, types.UpdateNewMessage)]
    assert request.pts == 40 and len(fetched) == 1
    assert point(backend, fetched[0], private) == (0, 40)

    box.try_begin_get_diff(777, "test")
    post = types.Message(id=8, peer_id=types.PeerChannel(777), date=now, message="news")
    channel_request = functions.updates.GetChannelDifferenceRequest(
        channel=types.InputChannel(777, 1), filter=types.ChannelMessagesFilterEmpty(), pts=12,
        limit=100)
    channel_diff = types.updates.ChannelDifference(
        pts=15, new_messages=[post], other_updates=[], chats=[], users=[], final=True)
    updates, _, _ = box.apply_channel_difference(channel_request, channel_diff,
                                                 SimpleNamespace(extend=lambda *a: None))
    fetched = [u for u in updates if isinstance(u, types.UpdateNewChannelMessage)]
    assert len(fetched) == 1
    assert point(backend, fetched[0], post) == (777, 12)


def test_pyrogram_recovery_adds_the_scopes_it_starts_from():
    from types import SimpleNamespace

    from actors.backends.pyrogram_backend import PyrogramBackend
    backend = SimpleNamespace(_resume_base={})          # read at start, before GetState
    PyrogramBackend._note_recovery_start(backend, {0: 40})
    assert backend._resume_base == {0: 40}
    PyrogramBackend._note_recovery_start(backend, {0: 90, -1000000000777: 5})
    # scope 0 keeps the older state (messages of the first recovery may still be queued)
    assert backend._resume_base == {0: 40, -1000000000777: 5}


def _pyrogram_recovery_world():
    """A Pyrogram client whose recover_gaps queues what a fake difference returns, and the
    backend parts that compute resume points, around a real read-gate queue."""
    from types import SimpleNamespace

    from pyrogram import raw

    from actors.backends import pyrogram_backend as pb
    from actors.backends.readgate import ReadGate

    gate = ReadGate(high=10, low=2)
    queue = gate.make_queue(track_taken=True)
    client = object.__new__(pb._FleetPyrogramClient)
    client.fleet_on_recovery = None
    backend = SimpleNamespace(_resume_base={0: 40}, _recovered={}, _prune_at=pb.MAX_RECOVERED,
                              read_gate=gate, client=client)
    for name in ("_note_queued", "_prune_recovered", "_resume_point", "_library_floors",
                 "_note_recovery_start"):
        setattr(backend, name, getattr(pb.PyrogramBackend, name).__get__(backend))
    client.fleet_on_recovery = backend._note_recovery_start
    queue.on_put = backend._note_queued
    private = raw.types.Message(id=7, peer_id=raw.types.PeerUser(user_id=5), date=0,
                                message="hi")

    def recovered(pts):
        return raw.types.UpdateNewMessage(message=private, pts=pts, pts_count=-1)
    return pb, client, backend, queue, recovered


def test_pyrogram_a_recovered_message_resumes_from_where_its_recovery_started(monkeypatch):
    """Found in review: messages Pyrogram's recovery queues carry no position, and the
    client's start state they fell back to can be days old (its watchdog recovers after a
    quiet spell): a successor asked for that much is refused (DifferenceTooLong) and skips
    ahead. They now resume from the states their own recovery started from, also when two
    recoveries overlap (a second review: one client-wide value gave the first recovery's
    later messages the second one's newer state)."""
    import asyncio
    from types import SimpleNamespace

    from pyrogram import Client, raw

    pb, client, backend, queue, recovered = _pyrogram_recovery_world()
    stored = {"pts": 9000}
    queued = {}

    async def library_recover_gaps(self, ids=None):       # stands in for Pyrogram's
        first = recovered(stored["pts"] + 5)
        queue.put_nowait((first, {}, {}))
        queued.setdefault("first", first)
        await asyncio.sleep(0.01)                         # the next slice: others run
        later = recovered(stored["pts"] + 6)
        queue.put_nowait((later, {}, {}))
        queued.setdefault("later", later)
        return (2, 0)

    async def get_update_states(ids=None):
        return [SimpleNamespace(id=0, pts=stored["pts"])]

    monkeypatch.setattr(Client, "recover_gaps", library_recover_gaps)
    client.storage = SimpleNamespace(get_update_states=get_update_states)

    async def go():
        one = asyncio.create_task(client.recover_gaps())
        await asyncio.sleep(0.005)
        stored["pts"] = 9500                              # live updates moved the state on
        two = asyncio.create_task(client.recover_gaps())
        assert await one == (2, 0) and await two == (2, 0)
        live = raw.types.UpdateNewMessage(message=queued["first"].message, pts=9600,
                                          pts_count=1)
        queue.put_nowait((live, {}, {}))
        assert backend._resume_point(queued["first"]) == (0, 9000)   # not the start's 40
        assert backend._resume_point(queued["later"]) == (0, 9000)   # not 9500
        assert backend._resume_point(live) == (0, 9599)
        assert backend._library_floors() == {0: 9000}
        queue.put_nowait(None)                  # the dispatcher's stop marker for a worker
        assert backend._library_floors() == {0: 9000}

        async def worker():
            while await queue.get() is not None:
                pass
        task = asyncio.create_task(worker())
        await asyncio.sleep(0.01)               # all handled, then the stop marker
        await asyncio.wait_for(task, 1)
        assert backend._library_floors() == {}
        assert backend._recovered == {}         # forgotten once neither queued nor taken
    asyncio.run(go())


def test_pyrogram_a_large_recovery_prunes_rarely():
    """A second review: pruning at every put past a fixed size scanned the whole queue each
    time (a recovery queues its difference at once): 8,000 messages took 4 s of loop time."""
    pb, client, backend, queue, recovered = _pyrogram_recovery_world()
    prunes = []
    prune = backend._prune_recovered
    backend._prune_recovered = lambda: (prunes.append(1), prune())
    token = pb.RECOVERING_FROM.set({0: 9000})
    try:
        for i in range(20_000):
            queue.put_nowait((recovered(9001 + i), {}, {}))
    finally:
        pb.RECOVERING_FROM.reset(token)
    assert len(backend._recovered) == 20_000
    assert len(prunes) <= 4, len(prunes)


def test_a_pinned_export_keeps_new_entries_past_the_limit():
    """A second review: while a pin keeps entries the actor has already seen, a full deque
    dropped the newest, which could be the one still in transit."""
    seen = [0]
    t = resume.InTransit(lambda: seen[0], limit=3)
    for pts in (1, 2, 3):
        t.pushed((0, pts))
    token = t.pin(0)                  # an export asked before the actor took any of them
    seen[0] = 3                       # then the actor took all three
    t.pushed((0, 4))                  # still in transit
    assert t.floors_after(3) == {0: 4}
    t.unpin(token)
    t.pushed((0, 5))
    assert [e[1] for e in t.entries] == [(0, 4), (0, 5)]


def test_the_fleet_telethon_client_uses_the_stamping_message_box():
    import asyncio

    from actors.backends.telethon_backend import _FleetClient, _FleetSession, _StampingMessageBox

    async def make():
        client = _FleetClient(_FleetSession(), 1, "0" * 32)   # built, never connected
        return type(client._message_box)
    assert asyncio.run(make()) is _StampingMessageBox
