"""One client TCP connection: transport, encryption, service messages, RPC dispatch, pushes.

Why: this is where the bytes of an unmodified Telethon or Pyrogram client meet the world.
Life of a packet:

    socket -> transport codec -> inbound DelayLine -> handle_packet
        auth_key_id == 0 -> key exchange (handshake.py), plain answers
        otherwise        -> decrypt with the registered key (unknown key: -404 and close)
                         -> split containers / gzip -> ping, msgs_ack, or an RPC
    responses and pushed updates -> enqueue -> one container per loop tick -> encrypt
        -> transport codec -> outbound DelayLine -> socket

Any error in one packet is logged and answered the way Telegram does (rpc_error for a bad
request, -404 for an unknown key, closing the socket for a broken transport stream); it
never reaches the server loop, so other connections and the world are unaffected.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import struct

from telethon.tl import types as T

from . import tlcodec
from .crypto import CryptoError, decrypt_client_message, encrypt_server_message
from .delay import DelayLine
from .handshake import Handshake, HandshakeError
from .transport import TransportError, detect_codec

log = logging.getLogger(__name__)

_ids = itertools.count(1)
MAX_WRITE_BUFFER = 64 * 1024 * 1024
MAX_CONTAINER_BYTES = 1024 * 1024
_CLOSE = object()


class Connection:
    def __init__(self, server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.id = next(_ids)
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.codec = None
        self.handshake = None
        self.auth_key = None
        self.key_id = None
        self.session_id = 0
        self.salt = 0
        self._content_sent = 0
        self.closed = False
        self.update_target = False  # registered with the hub for pushed updates
        self.layer = None
        self._pending: list[tuple[bytes, bool]] = []
        self._flush_scheduled = False
        self._ping_disconnect = None
        self._loop = asyncio.get_running_loop()
        self.inbound = DelayLine(self._on_packet, server.delay_in)
        self.outbound = DelayLine(self._write_raw, server.delay_out)

    @property
    def user_id(self):
        if self.key_id is None:
            return None
        rec = self.server.world.auth_keys.get(self.key_id)
        return rec[1] if rec else None

    # ------------------------------------------------------------------ reading ------
    async def run(self) -> None:
        st = self.server.stats
        try:
            self.codec = await detect_codec(self.reader)
            while not self.closed:
                pkt = await self.codec.read_packet(self.reader)
                st["packets_in"] += 1
                self.inbound.put(pkt)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                self.server.stats["vanished_mid_packet"] += 1
                log.info("conn %d: client vanished mid-packet (%d of %s bytes)", self.id, len(e.partial), e.expected)
            else:
                log.debug("conn %d: client closed the connection", self.id)
        except ConnectionError as e:
            log.info("conn %d: connection lost (%s)", self.id, e)
        except TransportError as e:
            st["transport_errors"] += 1
            log.warning("conn %d from %s: transport error: %s; closing", self.id, self.peer, e)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad connection must never take the server down
            log.exception("conn %d: unexpected error in the read loop", self.id)
        finally:
            if not self.closed:
                # Let queued (delayed) responses go out before the socket closes.
                self.inbound.put(_CLOSE)

    def _on_packet(self, pkt) -> None:
        if pkt is _CLOSE:
            self._flush()
            self.outbound.put(_CLOSE)
            return
        if self.closed:
            return
        try:
            if len(pkt) < 8:
                raise TransportError("packet of %d bytes" % len(pkt))
            if pkt[:8] == b"\0\0\0\0\0\0\0\0":
                self._handle_plain(pkt)
            else:
                self._handle_encrypted(pkt)
        except (TransportError, HandshakeError) as e:
            self.server.stats["bad_packets"] += 1
            log.warning("conn %d: %s; closing", self.id, e)
            self.close()
        except Exception:  # noqa: BLE001
            self.server.stats["bad_packets"] += 1
            log.exception("conn %d: failed to handle a packet; closing", self.id)
            self.close()

    # ------------------------------------------------------------------ key exchange -
    def _handle_plain(self, pkt: bytes) -> None:
        if len(pkt) < 20:
            raise TransportError("short unencrypted message")
        length = int.from_bytes(pkt[16:20], "little")
        if length <= 0 or 20 + length > len(pkt):
            raise TransportError("unencrypted message length %d" % length)
        try:
            req = tlcodec.read_object(pkt[20: 20 + length])
        except Exception as e:  # noqa: BLE001 - garbage is logged and the socket closed
            raise HandshakeError("unparsable unencrypted message: %s" % e) from None
        if self.handshake is None:
            self.handshake = Handshake(self.server.rsa_key)
        res = self.handshake.handle(req)
        if isinstance(res, tuple):
            _, key, res = res
            self.server.world.add_auth_key(key, None)
            self.server.stats["keys_created"] += 1
            log.info("conn %d: new auth key created", self.id)
        body = bytes(res)
        msg_id = self.server.msg_ids.next(True)
        self._send_packet(b"\0" * 8 + struct.pack("<qi", msg_id, len(body)) + body)

    # ------------------------------------------------------------------ encrypted ----
    def _handle_encrypted(self, pkt: bytes) -> None:
        key_id = int.from_bytes(pkt[:8], "little")
        rec = self.server.world.auth_keys.get(key_id)
        if rec is None:
            self.server.stats["unknown_keys"] += 1
            log.warning("conn %d: unknown auth key id %x; sending -404 and closing", self.id, key_id)
            self.transport_error(-404)
            return
        if self.key_id is not None and self.key_id != key_id:
            log.warning("conn %d: auth key changed on a live connection", self.id)
            self.server.hub.unregister(self)
        self.key_id, self.auth_key = key_id, rec[0]
        try:
            plain = decrypt_client_message(self.auth_key, pkt)
        except CryptoError as e:
            self.server.stats["bad_packets"] += 1
            log.warning("conn %d: %s; sending -404 and closing", self.id, e)
            self.transport_error(-404)
            return
        salt, session_id, msg_id, seq_no, length = struct.unpack_from("<qqqii", plain, 0)
        if length < 0 or length > len(plain) - 32 or len(plain) - 32 - length > 1024 + 15:
            raise TransportError("encrypted message length %d" % length)
        if session_id != self.session_id:
            self.session_id = session_id
            self._content_sent = 0
        self.salt = salt
        body = plain[32: 32 + length]
        try:
            parts = list(tlcodec.split_envelope(msg_id, seq_no, body))
        except Exception as e:  # noqa: BLE001 - malformed container: answer the outer id
            log.warning("conn %d: malformed envelope: %s", self.id, e)
            self.enqueue(tlcodec.rpc_error(msg_id, 400, "INPUT_CONTAINER_INVALID"))
            return
        for inner_id, _inner_seq, inner_body in parts:
            self._handle_message(inner_id, inner_body)

    def _handle_message(self, msg_id: int, body: bytes) -> None:
        cid = int.from_bytes(body[:4], "little")
        if cid == tlcodec.MSGS_ACK:
            return
        if cid in (tlcodec.PING, tlcodec.PING_DELAY_DISCONNECT):
            ping_id = int.from_bytes(body[4:12], "little", signed=True)
            if cid == tlcodec.PING_DELAY_DISCONNECT and len(body) >= 16:
                self._arm_disconnect(int.from_bytes(body[12:16], "little", signed=True))
            self.enqueue(bytes(T.Pong(msg_id=msg_id, ping_id=ping_id)))
            return
        try:
            req = tlcodec.read_object(body)
        except Exception as e:  # noqa: BLE001 - unknown constructor / truncated request
            self.server.stats["bad_requests"] += 1
            log.warning("conn %d: cannot parse request %08x: %s", self.id, cid, e)
            self.enqueue(tlcodec.rpc_error(msg_id, 400, "INPUT_METHOD_INVALID_%d" % cid))
            return
        self.server.rpc.dispatch(self, msg_id, req)

    def _arm_disconnect(self, seconds: int) -> None:
        if self._ping_disconnect is not None:
            self._ping_disconnect.cancel()
        if seconds > 0:
            self._ping_disconnect = self._loop.call_later(seconds, self._ping_timeout)

    def _ping_timeout(self) -> None:
        log.info("conn %d: ping_delay_disconnect expired; closing", self.id)
        self.close()

    # ------------------------------------------------------------------ writing ------
    def enqueue(self, body: bytes, content_related: bool = True) -> None:
        """Queue one message body; all bodies queued in one loop tick share a container."""
        if self.closed or self.auth_key is None:
            return
        self._pending.append((body, content_related))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def push(self, updates) -> None:
        self.server.stats["pushes"] += 1
        self.enqueue(bytes(updates))

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending or self.closed:
            return
        gen = self.server.msg_ids
        i = 0
        while i < len(pending):
            batch, size = [], 0
            while i < len(pending) and len(batch) < 1000 and (not batch or size + len(pending[i][0]) < MAX_CONTAINER_BYTES):
                body, content = pending[i]
                seq = self._content_sent * 2 + 1 if content else self._content_sent * 2
                if content:
                    self._content_sent += 1
                batch.append((gen.next(True), seq, body))
                size += len(body) + 16
                i += 1
            if len(batch) == 1:
                msg_id, seq, body = batch[0]
            else:
                body = tlcodec.container(batch)
                msg_id, seq = gen.next(False), self._content_sent * 2
            self._send_packet(encrypt_server_message(
                self.auth_key, self.key_id, self.salt, self.session_id, msg_id, seq, body))

    def _send_packet(self, payload: bytes) -> None:
        if self.closed:
            return
        self.server.stats["packets_out"] += 1
        self.outbound.put(self.codec.encode(payload))

    def transport_error(self, code: int) -> None:
        """Send a 4-byte transport error (e.g. -404) and close once it has been written."""
        if self.closed or self.codec is None:
            return
        self.outbound.put(self.codec.error_packet(code))
        self.outbound.put(_CLOSE)
        self._mark_closing()

    def _mark_closing(self) -> None:
        # Stop accepting new work but let the outbound line drain.
        self.server.hub.unregister(self)
        self.closed = True

    def _write_raw(self, data) -> None:
        if data is _CLOSE:
            self._really_close()
            return
        if self.writer.is_closing():
            return
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError) as e:
            log.debug("conn %d: write failed: %s", self.id, e)
            self._really_close()
            return
        transport = self.writer.transport
        if transport is not None and transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("conn %d: client is not reading (%d bytes buffered); closing", self.id,
                        transport.get_write_buffer_size())
            self._really_close()

    def close(self) -> None:
        """Close after anything already queued for output has been written."""
        if self.closed:
            return
        self._flush()
        self._mark_closing()
        self.outbound.put(_CLOSE)

    def _really_close(self) -> None:
        self.closed = True
        self.server.hub.unregister(self)
        if self._ping_disconnect is not None:
            self._ping_disconnect.cancel()
            self._ping_disconnect = None
        self.inbound.clear()
        self.outbound.clear()
        try:
            self.writer.close()
        except (ConnectionError, RuntimeError) as e:
            log.debug("conn %d: close failed: %s", self.id, e)
        self.server.connection_closed(self)
