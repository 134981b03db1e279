"""MTProto TCP transports: framing only, detected from a connection's first bytes.

Why: Telethon defaults to the *full* transport, Pyrogram to *abridged*, other clients use
*intermediate* (optionally padded). A Telegram server tells them apart by the first bytes of
the connection, and so does this one:

- 0xef                    -> abridged   (length/4 in 1 byte, or 0x7f + 3 bytes)
- 0xeeeeeeee              -> intermediate (4-byte little-endian length)
- 0xdddddddd              -> padded intermediate (same, 0-15 random trailing bytes)
- bytes 4..8 == 0         -> full (len, seq_no, payload, crc32); the first packet has seq 0
- anything else           -> obfuscated2: a 64-byte random header whose AES-CTR decryption
                             names one of the three above at bytes 56..60 (Telethon's
                             ConnectionTcpObfuscated, MTProxy-style clients); no proxy secret

A broken frame (bad crc, wrong seq, oversized length) raises TransportError: the connection
cannot be resynchronised, so the caller logs it and closes the socket, as Telegram does.
Transport-level errors (e.g. -404 "auth key not found") are sent as a 4-byte payload.
"""
from __future__ import annotations

import asyncio
import struct
import zlib

MAX_PACKET = 2 * 1024 * 1024  # upload parts are <= 512 KiB; Telegram closes on larger frames

__all__ = ["TransportError", "MAX_PACKET", "detect_codec", "Codec"]


class TransportError(Exception):
    """The byte stream is not a valid MTProto transport stream; close the connection."""


class Codec:
    """Base class: one instance per connection (full transport keeps sequence numbers)."""

    name = "?"

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        raise NotImplementedError

    def encode(self, payload: bytes) -> bytes:
        raise NotImplementedError

    def error_packet(self, code: int) -> bytes:
        """A transport error, e.g. code=-404, framed like any packet."""
        return self.encode(struct.pack("<i", code))

    @staticmethod
    def _check_len(n: int) -> None:
        if n <= 0 or n > MAX_PACKET:
            raise TransportError("bad packet length %d" % n)


class Abridged(Codec):
    name = "abridged"

    async def read_packet(self, reader):
        first = (await reader.readexactly(1))[0] & 0x7F  # high bit = quick-ack request
        if first == 0x7F:
            n = int.from_bytes(await reader.readexactly(3), "little") * 4
        else:
            n = first * 4
        self._check_len(n)
        return await reader.readexactly(n)

    def encode(self, payload):
        n = len(payload) >> 2
        if n < 0x7F:
            return bytes([n]) + payload
        return b"\x7f" + n.to_bytes(3, "little") + payload


class Intermediate(Codec):
    name = "intermediate"

    async def read_packet(self, reader):
        n = int.from_bytes(await reader.readexactly(4), "little") & 0x7FFFFFFF
        self._check_len(n)
        return await reader.readexactly(n)

    def encode(self, payload):
        return struct.pack("<i", len(payload)) + payload


class PaddedIntermediate(Intermediate):
    name = "padded_intermediate"

    async def read_packet(self, reader):
        data = await super().read_packet(reader)
        return strip_padding(data)


def strip_padding(data: bytes) -> bytes:
    """Remove padded-intermediate random tail: encrypted payloads are 24 + 16k bytes long,
    plain ones 20 + declared length."""
    if len(data) >= 8 and data[:8] == b"\0" * 8:
        if len(data) >= 20:
            body_len = int.from_bytes(data[16:20], "little")
            if 0 <= body_len <= len(data) - 20:
                return data[: 20 + body_len]
        return data
    if len(data) > 24:
        return data[: len(data) - (len(data) - 24) % 16]
    return data


class Full(Codec):
    name = "full"

    def __init__(self, prefix: bytes):
        self._prefix = prefix  # bytes consumed by detection, replayed by the first read
        self._in_seq = 0
        self._out_seq = 0

    async def _read(self, reader, n: int) -> bytes:
        if self._prefix:
            take, self._prefix = self._prefix[:n], self._prefix[n:]
            if len(take) == n:
                return take
            return take + await reader.readexactly(n - len(take))
        return await reader.readexactly(n)

    async def read_packet(self, reader):
        head = await self._read(reader, 4)
        n = int.from_bytes(head, "little")
        if n < 12 or n > MAX_PACKET + 12:
            raise TransportError("bad full-transport length %d" % n)
        rest = await self._read(reader, n - 4)
        seq = int.from_bytes(rest[:4], "little", signed=True)
        body = rest[4:-4]
        crc = int.from_bytes(rest[-4:], "little")
        if zlib.crc32(head + rest[:-4]) != crc:
            raise TransportError("full transport crc32 mismatch")
        if seq != self._in_seq:
            raise TransportError("full transport seq %d, expected %d" % (seq, self._in_seq))
        self._in_seq += 1
        return body

    def encode(self, payload):
        n = len(payload) + 12
        head = struct.pack("<ii", n, self._out_seq) + payload
        self._out_seq += 1
        return head + struct.pack("<I", zlib.crc32(head))


class _CTR:
    """AES-256-CTR stream (tgcrypto when installed, else Telethon's pyaes-based AESModeCTR)."""

    def __init__(self, key: bytes, iv: bytes):
        try:
            import tgcrypto
        except ImportError:
            tgcrypto = None
        self._tg = tgcrypto
        if tgcrypto is not None:
            self._key, self._iv, self._state = bytes(key), bytearray(iv), bytearray(1)
        else:
            from telethon.crypto import AESModeCTR
            self._ctr = AESModeCTR(bytes(key), bytes(iv))

    def apply(self, data: bytes) -> bytes:
        if self._tg is not None:
            return self._tg.ctr256_encrypt(data, self._key, self._iv, self._state)
        return self._ctr.encrypt(data)


class _DecryptingReader:
    __slots__ = ("_reader", "_ctr")

    def __init__(self, reader, ctr: _CTR):
        self._reader, self._ctr = reader, ctr

    async def readexactly(self, n: int) -> bytes:
        return self._ctr.apply(await self._reader.readexactly(n))


class Obfuscated(Codec):
    """obfuscated2: an inner codec whose byte stream is AES-CTR encrypted both ways."""

    def __init__(self, inner: Codec, reader, dec: _CTR, enc: _CTR):
        self.inner = inner
        self.name = "obfuscated_" + inner.name
        self._reader = _DecryptingReader(reader, dec)
        self._enc = enc

    async def read_packet(self, reader):
        return await self.inner.read_packet(self._reader)

    def encode(self, payload):
        return self._enc.apply(self.inner.encode(payload))


_OBFUSCATED_TAGS = {b"\xef\xef\xef\xef": Abridged, b"\xee\xee\xee\xee": Intermediate,
                    b"\xdd\xdd\xdd\xdd": PaddedIntermediate}


def _obfuscated(reader, init: bytes) -> Codec:
    dec = _CTR(init[8:40], init[40:56])
    rev = init[55:7:-1]
    enc = _CTR(rev[:32], rev[32:48])
    tag = dec.apply(init)[56:60]
    inner = _OBFUSCATED_TAGS.get(tag)
    if inner is None:
        raise TransportError("unknown transport (no known tag in an obfuscated2 header)")
    return Obfuscated(inner(), reader, dec, enc)


async def detect_codec(reader: asyncio.StreamReader) -> Codec:
    """Read the connection's first bytes and return the matching codec."""
    first = await reader.readexactly(1)
    if first == b"\xef":
        return Abridged()
    more = await reader.readexactly(3)
    head = first + more
    if head == b"\xee\xee\xee\xee":
        return Intermediate()
    if head == b"\xdd\xdd\xdd\xdd":
        return PaddedIntermediate()
    # Full transport: len(4) then seq_no(4) which is 0 on the first packet.
    peek = await reader.readexactly(4)
    if peek == b"\0\0\0\0":
        return Full(head + peek)
    if head[:4] in (b"GET ", b"POST", b"HEAD", b"PVrG") or head[:3] == b"\x16\x03\x01":
        raise TransportError("unknown transport (first bytes %s)" % (head + peek).hex())
    rest = await reader.readexactly(56)
    return _obfuscated(reader, head + peek + rest)
