"""TL encoding helpers for the server side of MTProto.

Why: Telethon's generated TL classes (layer 229, the same layer as kurigram) already know
how to serialize every Telegram type and parse every request; this module adds the few
service-layer pieces a *server* writes (rpc_result, msg_container, gzip_packed, Bool,
Vector) and splits incoming envelopes (containers, gzip) without failing the whole packet
when one inner message carries an unknown constructor.
"""
from __future__ import annotations

import gzip
import struct

from telethon.extensions import BinaryReader
from telethon.tl import types as T

CONTAINER = 0x73F1F8DC
GZIP_PACKED = 0x3072CFA1
RPC_RESULT = 0xF35C6D01
MSGS_ACK = 0x62D6B459
PING = 0x7ABE77EC
PING_DELAY_DISCONNECT = 0xF3427B8C
BOOL_TRUE = b"\xb5\x75\x72\x99"
BOOL_FALSE = b"\x37\x97\x79\xbc"
VECTOR = 0x1CB5C415

MAX_CONTAINER_MESSAGES = 1020


class RawBytes:
    """An already-serialized TL value; handlers may return it instead of a TLObject."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def __bytes__(self):
        return self.data

    def _bytes(self):  # Telethon's generated serializers call item._bytes() on nested objects
        return self.data


def tl_bool(value: bool) -> RawBytes:
    return RawBytes(BOOL_TRUE if value else BOOL_FALSE)


def tl_vector(items) -> RawBytes:
    return RawBytes(struct.pack("<Ii", VECTOR, len(items)) + b"".join(bytes(i) for i in items))


def tl_vector_long(items) -> RawBytes:
    return RawBytes(struct.pack("<Ii", VECTOR, len(items)) + b"".join(struct.pack("<q", i) for i in items))


def tl_string(data: bytes) -> bytes:
    n = len(data)
    if n < 254:
        return bytes([n]) + data + b"\0" * ((-(n + 1)) % 4)
    return bytes([254]) + n.to_bytes(3, "little") + data + b"\0" * ((-n) % 4)


def rpc_result(req_msg_id: int, body: bytes) -> bytes:
    return struct.pack("<Iq", RPC_RESULT, req_msg_id) + body


def rpc_error(req_msg_id: int, code: int, message: str) -> bytes:
    return rpc_result(req_msg_id, bytes(T.RpcError(code, message)))


def gzip_packed(body: bytes) -> bytes:
    return struct.pack("<I", GZIP_PACKED) + tl_string(gzip.compress(body, 3))


def container(messages: list[tuple[int, int, bytes]]) -> bytes:
    """msg_container from (msg_id, seq_no, body) triples."""
    parts = [struct.pack("<Ii", CONTAINER, len(messages))]
    for msg_id, seq_no, body in messages:
        parts.append(struct.pack("<qii", msg_id, seq_no, len(body)))
        parts.append(body)
    return b"".join(parts)


def split_envelope(msg_id: int, seq_no: int, body: bytes, depth: int = 0):
    """Yield (msg_id, seq_no, body) for each message inside `body`, unpacking containers and
    gzip_packed. Raises ValueError on a malformed envelope."""
    if len(body) < 4:
        raise ValueError("message body shorter than a constructor id")
    cid = int.from_bytes(body[:4], "little")
    if cid == CONTAINER and depth == 0:
        count = int.from_bytes(body[4:8], "little")
        if count < 0 or count > MAX_CONTAINER_MESSAGES:
            raise ValueError("container with %d messages" % count)
        pos = 8
        for _ in range(count):
            if pos + 16 > len(body):
                raise ValueError("truncated container")
            inner_id, inner_seq, length = struct.unpack_from("<qii", body, pos)
            pos += 16
            if length < 0 or pos + length > len(body):
                raise ValueError("container item overruns the container")
            yield from split_envelope(inner_id, inner_seq, body[pos: pos + length], depth + 1)
            pos += length
    elif cid == GZIP_PACKED:
        reader = BinaryReader(body[4:])
        data = gzip.decompress(reader.tgread_bytes())
        yield from split_envelope(msg_id, seq_no, data, depth + 1)
    else:
        yield msg_id, seq_no, body


def read_object(body: bytes):
    """Parse one TL object (a request) with Telethon's codec. Raises on unknown constructors
    (telethon.errors.TypeNotFoundError) and truncated data."""
    reader = BinaryReader(body)
    return reader.tgread_object()
