"""Bad input over raw TCP: the server answers like Telegram, logs, and keeps serving.

Each case talks raw bytes (with Telethon's own MTProtoState for encryption where a valid
key is needed); the last test shows a fresh real client still works and the world is intact.
"""
from __future__ import annotations

import asyncio
import collections
import io
import logging
import os
import struct
import zlib

from telethon.crypto import AuthKey
from telethon.network.mtprotostate import MTProtoState
from telethon.tl import functions as F
from telethon.tl import types as T

from system.localtg.clients import telethon_client, telethon_start

from .conftest import run, wait_until

ERR_404 = struct.pack("<i", -404)


class RawClient:
    """A minimal intermediate-transport MTProto client for hostile tests."""

    def __init__(self, host, port, key: bytes | None = None):
        self.host, self.port = host, port
        self.state = None
        if key is not None:
            loggers = collections.defaultdict(lambda: logging.getLogger("rawclient"))
            self.state = MTProtoState(AuthKey(key), loggers)

    async def connect(self, tag: bytes = b"\xee\xee\xee\xee"):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        if tag:
            self.writer.write(tag)

    def send_raw(self, data: bytes):
        self.writer.write(data)

    def send_packet(self, payload: bytes):
        self.writer.write(struct.pack("<i", len(payload)) + payload)

    def send_request(self, body: bytes) -> int:
        buf = io.BytesIO()
        msg_id = self.state.write_data_as_message(buf, body, True)
        self.send_packet(self.state.encrypt_message_data(buf.getvalue()))
        return msg_id

    async def recv_packet(self, timeout=5.0):
        """Next payload, or None when the server closed the connection."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
            n = struct.unpack("<i", head)[0]
            return await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def closed_by_server(self, timeout=5.0) -> bool:
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except ConnectionError:
            return True

    def decrypt(self, payload):
        return self.state.decrypt_message_data(payload)

    def close(self):
        self.writer.close()


def unwrap(msg):
    """Messages of a (possibly container) server message."""
    obj = msg.obj
    return list(obj.messages) if hasattr(obj, "messages") else [msg]


def test_garbage_bytes_close_the_connection(tg):
    async def main():
        c = RawClient(tg.host, tg.port)
        await c.connect(tag=b"")
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(64))
        assert await c.closed_by_server()
        c2 = RawClient(tg.host, tg.port)
        await c2.connect(tag=b"")
        c2.send_raw(b"\x01\x02\x03\x04\x05\x06\x07\x08" + os.urandom(100))
        assert await c2.closed_by_server()

    run(main())


def test_wrong_auth_key_gets_transport_error_404(tg):
    async def main():
        c = RawClient(tg.host, tg.port)
        await c.connect()
        c.send_packet(os.urandom(8) + os.urandom(16) + os.urandom(64))
        assert await c.recv_packet() == ERR_404
        assert await c.closed_by_server()

    run(main())


def test_known_key_with_bad_msg_key_gets_404(tg, ctl):
    acct = ctl.create_account("user")
    key = bytes.fromhex(acct["auth_key_hex"])

    async def main():
        c = RawClient(tg.host, tg.port)
        await c.connect()
        c.send_packet(struct.pack("<Q", AuthKey(key).key_id) + os.urandom(16) + os.urandom(64))
        assert await c.recv_packet() == ERR_404
        assert await c.closed_by_server()

    run(main())


def test_unknown_constructor_gets_rpc_error_and_connection_survives(tg, ctl):
    acct = ctl.create_account("user")

    async def main():
        c = RawClient(tg.host, tg.port, bytes.fromhex(acct["auth_key_hex"]))
        await c.connect()
        bad_id = c.send_request(b"\xef\xbe\xad\xde" + os.urandom(12))
        msgs = unwrap(c.decrypt(await c.recv_packet()))
        results = [m.obj for m in msgs if getattr(m.obj, "req_msg_id", None) == bad_id]
        assert results and results[0].error is not None
        assert results[0].error.error_code == 400 and "INPUT_METHOD_INVALID" in results[0].error.error_message
        ping_id = 12345
        c.send_request(bytes(F.PingRequest(ping_id)))
        pongs = [m.obj for m in unwrap(c.decrypt(await c.recv_packet())) if isinstance(m.obj, T.Pong)]
        assert pongs and pongs[0].ping_id == ping_id
        c.close()

    run(main())


def test_oversized_packet_closes_the_connection(tg):
    async def main():
        c = RawClient(tg.host, tg.port)
        await c.connect()
        c.send_raw(struct.pack("<i", 64 * 1024 * 1024) + os.urandom(1024))
        assert await c.closed_by_server()

    run(main())


def test_full_transport_bad_crc_closes_the_connection(tg):
    async def main():
        c = RawClient(tg.host, tg.port)
        await c.connect(tag=b"")
        body = b"\0" * 8 + os.urandom(32)
        head = struct.pack("<ii", len(body) + 12, 0) + body
        c.send_raw(head + struct.pack("<I", zlib.crc32(head) ^ 1))
        assert await c.closed_by_server()

    run(main())


def test_garbage_unencrypted_message_closes_the_connection(tg):
    async def main():
        c = RawClient(tg.host, tg.port)
        await c.connect()
        c.send_packet(b"\0" * 8 + struct.pack("<qi", 1, 16) + os.urandom(16))
        assert await c.closed_by_server()

    run(main())


def test_client_vanishing_mid_request_does_not_corrupt_state(tg, ctl):
    user = ctl.create_account("user")
    other = ctl.create_account("user")

    async def main():
        # 1) half a packet, then gone
        c = RawClient(tg.host, tg.port, bytes.fromhex(user["auth_key_hex"]))
        await c.connect()
        c.send_raw(struct.pack("<i", 1000) + os.urandom(300))
        c.close()
        # 2) a complete request, then gone before the answer
        c2 = RawClient(tg.host, tg.port, bytes.fromhex(user["auth_key_hex"]))
        await c2.connect()
        req = F.messages.SendMessageRequest(peer=T.InputPeerUser(other["user_id"], 0), message="sent then vanished",
                                            random_id=42)
        c2.send_request(bytes(req))
        await c2.writer.drain()
        c2.close()

    run(main())
    got = run(wait_until(lambda: ctl.received(other["user_id"])))
    assert [m["text"] for m in got] == ["sent then vanished"]


def test_server_still_serves_a_fresh_client_after_bad_input(tg, ctl):
    bot = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")

    async def main():
        c = telethon_client(bot, tg.host, tg.port, provisioned=False)
        await telethon_start(c, bot)
        await c.send_message(user["user_id"], "still alive")
        await c.disconnect()

    run(main())
    assert ctl.received(user["user_id"])[-1]["text"] == "still alive"
    counters = ctl.stats()["counters"]
    assert counters.get("transport_errors", 0) >= 1 and counters.get("unknown_keys", 0) >= 1
    assert tg.proc.poll() is None
