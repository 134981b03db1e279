"""msgpack codec for everything that leaves the actor system.

Inside the system thespian pickles messages. Whatever crosses a trust or time boundary (the admin
protocol between the CLI and the ControlActor, payloads stored in SQLite) is msgpack instead, in
an envelope that names its schema version and its kind:

    {"v": SCHEMA_VERSION, "kind": "bot_config", "body": {...}}

Why an envelope: a reader can refuse data written by a newer (or older, incompatible) schema with
a clear message instead of misreading it, and a payload of one kind cannot be mistaken for
another. Why strict decoding: the bytes may come from a socket, so nothing in them may make the
decoder allocate more than `max_size` (msgpack's own length limits are set from it), build
objects other than plain data (no ext types, map keys must be strings), or silently ignore
trailing garbage.

Framing for stream sockets: a 4-byte big-endian length, then the encoded envelope.
"""
from __future__ import annotations

import struct
from typing import Any

import msgpack

SCHEMA_VERSION = 1
DEFAULT_MAX = 64 * 1024          # bytes; per encoded envelope (and per frame)
MAX_DEPTH = 32                   # nesting of lists/maps inside a body
_HEADER = struct.Struct(">I")
_ENVELOPE_KEYS = frozenset(("v", "kind", "body"))
_INT_MIN, _INT_MAX = -(2 ** 63), 2 ** 64 - 1


class CodecError(ValueError):
    """Data that cannot be encoded, or bytes that are not a valid envelope of this schema."""


# ---- encoding ---------------------------------------------------------------------------------

def _check(obj: Any, where: str, depth: int) -> None:
    """Only plain data that decodes back to the same shape: msgpack would happily pack an int
    map key that strict decoding then refuses, so refuse it here, where the caller can be told."""
    if obj is None or isinstance(obj, (bool, float, str, bytes)):
        return
    if isinstance(obj, int):
        if not _INT_MIN <= obj <= _INT_MAX:
            raise CodecError(f"{where}: integer {obj} does not fit in 64 bits")
        return
    if depth >= MAX_DEPTH:
        raise CodecError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _check(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise CodecError(f"{where}: map key {key!r} is a {type(key).__name__}, "
                                 "only str keys are allowed")
            _check(value, f"{where}.{key}", depth + 1)
        return
    raise CodecError(f"{where}: cannot encode a {type(obj).__name__} "
                     "(only None, bool, int, float, str, bytes, list, tuple, dict)")


def encode(obj: dict, kind: str, max_size: int = DEFAULT_MAX) -> bytes:
    """`obj` wrapped in a versioned envelope, as msgpack bytes (at most `max_size` of them).
    Tuples come back as lists."""
    if not isinstance(kind, str) or not kind:
        raise CodecError(f"kind must be a non-empty str, got {kind!r}")
    if not isinstance(obj, dict):
        raise CodecError(f"body must be a dict, got {type(obj).__name__}")
    _check(obj, "body", 0)
    try:
        data = msgpack.packb({"v": SCHEMA_VERSION, "kind": kind, "body": obj},
                             use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:   # _check should have caught these
        raise CodecError(f"cannot encode {kind!r}: {exc}") from exc
    if len(data) > max_size:
        raise CodecError(f"encoded {kind!r} is {len(data)} bytes, more than the limit of "
                         f"{max_size}")
    return data


# ---- decoding ---------------------------------------------------------------------------------

def decode(data: bytes, max_size: int = DEFAULT_MAX, kind: str | None = None) -> tuple[str, dict]:
    """(kind, body) from an envelope made by `encode`. With `kind`, any other kind is refused.
    Raises CodecError for anything else: oversized input, malformed or truncated msgpack,
    trailing bytes, ext types, non-str map keys, a missing or other schema version."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    size = len(data)
    if size > max_size:
        raise CodecError(f"message is {size} bytes, more than the limit of {max_size}")
    if size == 0:
        raise CodecError("empty message")
    try:
        env = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True,
            max_str_len=max_size, max_bin_len=max_size,
            max_array_len=max_size, max_map_len=max_size // 2, max_ext_len=0)
    except msgpack.ExtraData as exc:
        raise CodecError(f"trailing bytes after the message ({len(exc.extra)} extra)") from exc
    except msgpack.StackError as exc:
        raise CodecError("malformed message: nested too deeply") from exc
    except msgpack.FormatError as exc:
        raise CodecError("malformed message: not valid msgpack") from exc
    except (ValueError, msgpack.UnpackException) as exc:
        # incomplete input, ext type, non-str map key, invalid UTF-8, a limit exceeded, ...
        raise CodecError(f"malformed message: {exc or type(exc).__name__}") from exc
    if not isinstance(env, dict):
        raise CodecError(f"envelope must be a map, got {type(env).__name__}")
    if "v" not in env:
        raise CodecError("envelope has no schema version ('v')")
    version = env["v"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise CodecError(f"unsupported schema version {version!r} (this side speaks "
                         f"{SCHEMA_VERSION})")
    extra = set(env) - _ENVELOPE_KEYS
    if extra:
        raise CodecError(f"unexpected envelope fields: {sorted(extra)}")
    got_kind = env.get("kind")
    if not isinstance(got_kind, str) or not got_kind:
        raise CodecError(f"envelope kind must be a non-empty str, got {got_kind!r}")
    if kind is not None and got_kind != kind:
        raise CodecError(f"expected a {kind!r} message, got {got_kind!r}")
    if "body" not in env:
        raise CodecError("envelope has no body")
    body = env["body"]
    if not isinstance(body, dict):
        raise CodecError(f"body must be a map, got {type(body).__name__}")
    return got_kind, body


# ---- framing --------------------------------------------------------------------------------

def frame(data: bytes) -> bytes:
    """`data` prefixed with its length (4 bytes, big-endian)."""
    if len(data) > 0xFFFFFFFF:
        raise CodecError(f"frame of {len(data)} bytes is too long")
    return _HEADER.pack(len(data)) + bytes(data)


def _reader(src):
    """A `read(n)` for a socket (recv) or a binary stream (read)."""
    if hasattr(src, "recv"):
        return src.recv
    if hasattr(src, "read"):
        return src.read
    raise TypeError(f"read_frame needs a socket or a binary stream, got {type(src).__name__}")


def _read_exact(read, n: int, what: str, allow_eof: bool) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = read(n - len(buf))
        if not chunk:
            if allow_eof and not buf:
                return None
            raise CodecError(f"connection closed inside a frame {what} "
                             f"({len(buf)} of {n} bytes)")
        buf += chunk
    return bytes(buf)


def read_frame(src, max_size: int = DEFAULT_MAX) -> bytes | None:
    """One frame's payload from a blocking socket or binary stream; None on a clean EOF between
    frames. A length above `max_size` is refused before anything is read or allocated for it
    (the caller should then close the connection: the stream is out of sync)."""
    read = _reader(src)
    header = _read_exact(read, _HEADER.size, "header", allow_eof=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > max_size:
        raise CodecError(f"frame of {length} bytes announced, more than the limit of {max_size}")
    if length == 0:
        return b""
    return _read_exact(read, length, "body", allow_eof=False)


async def aread_frame(reader, max_size: int = DEFAULT_MAX) -> bytes | None:
    """`read_frame` for an asyncio StreamReader."""
    import asyncio
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise CodecError(f"connection closed inside a frame header "
                         f"({len(exc.partial)} of {_HEADER.size} bytes)") from exc
    (length,) = _HEADER.unpack(header)
    if length > max_size:
        raise CodecError(f"frame of {length} bytes announced, more than the limit of {max_size}")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise CodecError(f"connection closed inside a frame body "
                         f"({len(exc.partial)} of {length} bytes)") from exc
