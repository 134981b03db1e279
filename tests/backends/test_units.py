"""Unit tests of the backends' pure parts: argument checks, the session envelope, the sink's
per-loop-iteration coalescing, error classification of each library, and the session round
trips (Telethon's MemorySession, Pyrogram's in-memory storage)."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from pyrogram import errors as perrors
from pyrogram.storage import SQLiteStorage
from telethon import errors as terrors

from actors.backends import pyrogram_backend, tdlib_backend, telethon_backend
from actors.backends.base import (EventSink, SessionCorrupted, backend_config, chat_kind_of,
                                  decode_session, encode_session)
from actors.backends.registry import BACKENDS, backend_class

GOOD = {"name": "alpha", "account_kind": "bot", "token": "1:abc", "api_id": 1,
        "api_hash": "h" * 32}


def test_config_defaults_and_refusals():
    cfg = backend_config(GOOD, "telethon")
    assert (cfg["max_in_flight"], cfg["health_interval_s"], cfg["stall_after_s"]) == \
        (64, 15.0, 120.0)
    assert cfg["session_in_store"] is True and cfg["library"] == "telethon"
    bad = [({"name": ""}, "name"), ({"library": "pyrogram"}, "library"),
           ({"account_kind": "robot"}, "account_kind"), ({"token": ""}, "token"),
           ({"account_kind": "user"}, "phone"), ({"api_id": "x"}, "api_id"),
           ({"api_hash": ""}, "api_hash"), ({"server": {"host": "h"}}, "server"),
           ({"max_in_flight": 0}, "max_in_flight"), ({"stall_after_s": 0}, "stall_after_s")]
    for change, word in bad:
        with pytest.raises(ValueError, match=word):
            backend_config(dict(GOOD, **change), "telethon")


def test_registry():
    assert set(BACKENDS) == {"telethon", "pyrogram", "tdlib"}
    assert backend_class("tdlib").endswith("TdlibBackend")
    with pytest.raises(ValueError, match="unknown client library"):
        backend_class("madeline")


def test_chat_kind_from_marked_ids():
    assert [chat_kind_of(i) for i in (42, -42, -1001234567890)] == \
        ["private", "group", "channel"]


def test_session_envelope_refuses_garbage_and_other_libraries():
    blob = encode_session("telethon", {"auth_key": b"k" * 256})
    assert decode_session("telethon", blob) == {"auth_key": b"k" * 256}
    assert decode_session("telethon", None) is None
    for bad in (b"\x00garbage", blob[:-3], encode_session("pyrogram", {})):
        with pytest.raises(SessionCorrupted, match="corrupted session"):
            decode_session("telethon", bad)


class _Bridge:
    def __init__(self):
        self.posts = []

    def post(self, item, hot=False):
        self.posts.append(item)
        self.hot = hot


def test_sink_wakes_once_per_loop_iteration():
    """Everything pushed during one loop iteration leaves with one wake-up."""
    loop = asyncio.new_event_loop()
    bridge = _Bridge()
    sink = EventSink(bridge, defer=loop.call_soon_threadsafe)

    def burst():
        for i in range(100):
            sink.push(("update", i))
        assert bridge.posts == []          # not yet: the wake runs on the next iteration
    loop.call_soon(burst)
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.run_until_complete(asyncio.sleep(0))
    assert bridge.posts == [("sink",)]
    assert [e[1] for e in sink.take()] == list(range(100))
    sink.push(("update", 100))            # after a take, the next push arms a new wake
    loop.run_until_complete(asyncio.sleep(0))
    assert bridge.posts == [("sink",), ("sink",)]
    assert bridge.hot is True             # from the loop: may be delivered inline
    loop.close()


def test_sink_without_deferral_is_thread_safe():
    bridge = _Bridge()
    sink = EventSink(bridge)
    threads = [threading.Thread(target=lambda: [sink.push(("x", 1)) for _ in range(500)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sink.take()) == 2000 and bridge.posts == [("sink",)]


def test_telethon_classification():
    c = telethon_backend.classify
    assert c(terrors.FloodWaitError(request=None, capture=7))[:2] == ("flood_wait", 7)
    assert c(terrors.FloodWaitError(request=None, capture=0))[:2] == ("flood_wait", 1)
    assert c(terrors.PeerIdInvalidError(request=None))[0] == "peer_invalid"
    assert c(terrors.ChatWriteForbiddenError(request=None))[0] == "peer_invalid"
    assert c(telethon_backend.PeerUnknown("unknown chat 5"))[0] == "peer_invalid"
    assert c(terrors.MessageNotModifiedError(request=None))[0] == "rpc_fatal"
    assert c(terrors.RPCError(None, "WORKER_BUSY", code=500))[0] == "network"
    assert c(terrors.RPCError(None, "Timeout", code=-503))[0] == "network"
    assert c(ConnectionError("Cannot send requests while disconnected"))[0] == "network"
    assert c(asyncio.TimeoutError())[0] == "timeout"
    assert c(RuntimeError("bug"))[0] == "rpc_fatal"
    assert telethon_backend.rpc_id(terrors.PhoneCodeInvalidError(request=None)) == \
        "PHONE_CODE_INVALID"


def test_pyrogram_classification():
    c = pyrogram_backend.classify
    assert c(perrors.FloodWait(value=7))[:2] == ("flood_wait", 7)
    assert c(perrors.SlowmodeWait(value=3))[:2] == ("flood_wait", 3)
    assert c(perrors.PeerIdInvalid())[0] == "peer_invalid"
    assert c(perrors.ChatWriteForbidden())[0] == "peer_invalid"
    assert c(perrors.MessageNotModified())[0] == "rpc_fatal"
    assert c(perrors.InternalServerError())[0] == "network"
    assert c(TimeoutError("Request timed out"))[0] == "timeout"
    assert c(OSError("reset"))[0] == "network"


def test_tdlib_classification():
    c = tdlib_backend.classify
    assert c({"code": 429, "message": "Too Many Requests: retry after 9",
              "flood_wait": 9})[:2] == ("flood_wait", 9)
    assert c({"code": 400, "message": "Chat not found"})[0] == "peer_invalid"
    assert c({"code": 500, "message": "TDLib client closed"})[0] == "network"
    assert c({"code": 400, "message": "Message can't be edited"})[0] == "rpc_fatal"


def test_telethon_session_round_trip():
    from telethon.crypto import AuthKey
    sess = telethon_backend._FleetSession()
    sess.set_dc(2, "127.0.0.1", 4444)
    sess.auth_key = AuthKey(b"a" * 256)
    body = {"dc_id": 2, "server_address": "127.0.0.1", "port": 4444, "auth_key": b"a" * 256,
            "state": [10, 0, 1_700_000_000, 3], "channels": [[555, 7]],
            "entities": [[0, 99, None, None, None], [99, 12345, "me", None, "Me"]]}
    restored = telethon_backend._FleetSession.from_body(body)
    again = restored.to_body()
    assert again["auth_key"] == b"a" * 256 and again["state"] == [10, 0, 1_700_000_000, 3]
    assert again["channels"] == [[555, 7]] and again["entities"][0][0] == 0
    assert sorted(map(tuple, again["entities"])) == sorted(map(tuple, body["entities"]))
    decode_session("telethon", encode_session("telethon", again))
    with pytest.raises(SessionCorrupted):
        telethon_backend._FleetSession.from_body(dict(body, auth_key=b"short"))
    with pytest.raises(SessionCorrupted):
        telethon_backend._FleetSession.from_body(dict(body, state=["x"]))


def test_pyrogram_storage_round_trip(tmp_path):
    body = {"dc_id": 2, "server_address": "127.0.0.1", "port": 4444, "api_id": 1,
            "test_mode": False, "auth_key": b"b" * 256, "date": 0, "user_id": 77,
            "is_bot": True, "states": [[0, 10, 0, 1_700_000_000, 3]],
            "peers": [[5, 123, "user", None]], "usernames": [[5, ["five"]]]}

    async def main():
        storage = SQLiteStorage("t", Path(tmp_path), in_memory=True)
        await storage.open()
        await pyrogram_backend.restore_storage(storage, body)
        out = await pyrogram_backend.export_storage(storage)
        peer = await storage.get_peer_by_username("five")
        await storage.close()
        return out, peer
    out, peer = asyncio.run(main())
    assert out == body and peer.user_id == 5
    with pytest.raises(SessionCorrupted):
        asyncio.run(_restore_bad(tmp_path))


async def _restore_bad(tmp_path):
    storage = SQLiteStorage("t", Path(tmp_path), in_memory=True)
    await storage.open()
    try:
        await pyrogram_backend.restore_storage(storage, {"auth_key": b"x", "peers": [["a"]]})
    finally:
        await storage.close()


def test_pyrogram_session_never_sleeps_on_flood_wait():
    """Methods such as get_chat_history pass sleep_threshold=60 to invoke; the backend's
    sessions raise at once anyway (a stock Session would sleep the 30 s here)."""
    from types import SimpleNamespace

    from pyrogram import raw

    async def main():
        session = pyrogram_backend._NoFloodSleepSession(
            SimpleNamespace(name="t"), 2, "127.0.0.1", 1, b"k" * 256, False)
        session.is_started.set()
        calls = []

        async def send(query, wait_response=True, timeout=None):
            calls.append(query)
            raise perrors.FloodWait(value=30)
        session.send = send
        with pytest.raises(perrors.FloodWait):
            await asyncio.wait_for(session.invoke(raw.functions.updates.GetState(),
                                                  sleep_threshold=60), 2)
        return calls
    assert len(asyncio.run(main())) == 1
