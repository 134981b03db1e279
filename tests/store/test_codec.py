"""messages.codec: round trips, every rejection, and framing."""
from __future__ import annotations

import asyncio
import io
import socket
import struct

import msgpack
import pytest

from messages import codec
from messages.codec import CodecError, SCHEMA_VERSION, decode, encode, frame, read_frame


def raw(env) -> bytes:
    return msgpack.packb(env, use_bin_type=True)


def test_round_trip_plain_data():
    body = {"s": "héllo", "i": -5, "big": 2 ** 64 - 1, "f": 1.5, "b": b"\x00\xff", "n": None,
            "t": True, "l": [1, [2, {"x": "y"}]], "tuple": (1, 2), "empty": {}}
    kind, out = decode(encode(body, "bot_config"))
    assert kind == "bot_config"
    assert out == dict(body, tuple=[1, 2])


def test_envelope_shape():
    env = msgpack.unpackb(encode({"a": 1}, "kv"), raw=False)
    assert env == {"v": SCHEMA_VERSION, "kind": "kv", "body": {"a": 1}}


def test_expected_kind():
    data = encode({"a": 1}, "kv")
    assert decode(data, kind="kv") == ("kv", {"a": 1})
    with pytest.raises(CodecError, match="expected a 'outbox' message, got 'kv'"):
        decode(data, kind="outbox")


# ---- encode refusals ------------------------------------------------------------------------

@pytest.mark.parametrize("body, match", [
    ({"x": object()}, r"body\.x: cannot encode a object"),
    ({"x": {1, 2}}, r"body\.x: cannot encode a set"),
    ({"x": {1: "int key"}}, r"body\.x: map key 1 is a int"),
    ({"x": [1, 2 ** 64]}, r"body\.x\[1\]: integer .* does not fit in 64 bits"),
    ({"x": -(2 ** 63) - 1}, r"does not fit in 64 bits"),
])
def test_encode_refuses_non_plain_data(body, match):
    with pytest.raises(CodecError, match=match):
        encode(body, "k")


def test_encode_refuses_deep_nesting():
    body: dict = {}
    cur = body
    for _ in range(codec.MAX_DEPTH + 1):
        cur["d"] = {}
        cur = cur["d"]
    with pytest.raises(CodecError, match="nested deeper"):
        encode(body, "k")


def test_encode_refuses_non_dict_body_and_bad_kind():
    with pytest.raises(CodecError, match="body must be a dict, got list"):
        encode([1], "k")
    with pytest.raises(CodecError, match="kind must be a non-empty str"):
        encode({}, "")
    with pytest.raises(CodecError, match="kind must be a non-empty str"):
        encode({}, None)


def test_encode_refuses_oversized():
    with pytest.raises(CodecError, match="more than the limit of 1000"):
        encode({"x": "a" * 2000}, "k", max_size=1000)
    assert len(encode({"x": "a" * 900}, "k", max_size=1000)) <= 1000


# ---- decode refusals ------------------------------------------------------------------------

def test_decode_oversized_input():
    data = encode({"x": "a" * 5000}, "k")
    with pytest.raises(CodecError, match=r"\d+ bytes, more than the limit of 4096"):
        decode(data, max_size=4096)


def test_decode_empty_and_not_bytes():
    with pytest.raises(CodecError, match="empty message"):
        decode(b"")
    with pytest.raises(CodecError, match="expected bytes, got str"):
        decode("text")


def test_decode_trailing_bytes():
    with pytest.raises(CodecError, match=r"trailing bytes after the message \(3 extra\)"):
        decode(encode({"a": 1}, "k") + b"abc")


def test_decode_truncated():
    with pytest.raises(CodecError, match="malformed message: .*incomplete"):
        decode(encode({"a": "hello"}, "k")[:-2])


def test_decode_not_msgpack():
    with pytest.raises(CodecError, match="not valid msgpack"):
        decode(b"\xc1")


def test_decode_too_deep():
    with pytest.raises(CodecError, match="nested too deeply"):
        decode(b"\x91" * 3000 + b"\xc0")


def test_decode_missing_version():
    with pytest.raises(CodecError, match=r"no schema version \('v'\)"):
        decode(raw({"kind": "k", "body": {}}))


@pytest.mark.parametrize("version", [0, 2, "1", 1.0, None, True])
def test_decode_wrong_version(version):
    with pytest.raises(CodecError, match="unsupported schema version"):
        decode(raw({"v": version, "kind": "k", "body": {}}))


@pytest.mark.parametrize("body", [[1, 2], "s", 5, None, b"x"])
def test_decode_non_dict_body(body):
    with pytest.raises(CodecError, match="body must be a map"):
        decode(raw({"v": SCHEMA_VERSION, "kind": "k", "body": body}))


def test_decode_missing_body_or_kind_or_extra_field():
    with pytest.raises(CodecError, match="no body"):
        decode(raw({"v": SCHEMA_VERSION, "kind": "k"}))
    with pytest.raises(CodecError, match="kind must be a non-empty str"):
        decode(raw({"v": SCHEMA_VERSION, "body": {}}))
    with pytest.raises(CodecError, match=r"unexpected envelope fields: \['x'\]"):
        decode(raw({"v": SCHEMA_VERSION, "kind": "k", "body": {}, "x": 1}))


def test_decode_envelope_not_a_map():
    with pytest.raises(CodecError, match="envelope must be a map, got list"):
        decode(raw([1, "k", {}]))


def test_decode_non_str_map_key():
    with pytest.raises(CodecError, match="not allowed for map key"):
        decode(raw({"v": SCHEMA_VERSION, "kind": "k", "body": {1: "x"}}))


def test_decode_ext_type_refused():
    data = raw({"v": SCHEMA_VERSION, "kind": "k", "body": {"x": msgpack.ExtType(5, b"abc")}})
    with pytest.raises(CodecError, match="max_ext_len"):
        decode(data)


def test_decode_timestamp_ext_refused():
    data = msgpack.packb({"v": SCHEMA_VERSION, "kind": "k",
                          "body": {"t": msgpack.Timestamp(1, 0)}})
    with pytest.raises(CodecError, match="malformed"):
        decode(data)


def test_decode_invalid_utf8():
    # a str header (fixstr of length 2) followed by bytes that are not UTF-8
    data = raw({"v": SCHEMA_VERSION, "kind": "k", "body": {"s": "ab"}})
    data = data.replace(b"\xa2ab", b"\xa2\xff\xfe")
    with pytest.raises(CodecError, match="malformed.*utf-8"):
        decode(data)


def test_decode_bin_length_lie_is_bounded():
    # bin32 claiming 1 GiB: refused without allocating it
    data = b"\x83\xa1v\x01\xa4kind\xa1k\xa4body\x81\xa1x\xc6\x40\x00\x00\x00abc"
    with pytest.raises(CodecError, match="malformed"):
        decode(data)


def test_codec_error_is_value_error():
    assert issubclass(CodecError, ValueError)


# ---- framing ----------------------------------------------------------------------------------

def test_frame_layout():
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"


def test_read_frame_stream_sequence_and_eof():
    a, b = encode({"n": 1}, "k"), encode({"n": 2}, "k")
    stream = io.BytesIO(frame(a) + frame(b) + frame(b""))
    assert read_frame(stream) == a
    assert read_frame(stream) == b
    assert read_frame(stream) == b""
    assert read_frame(stream) is None          # clean EOF between frames


def test_read_frame_socket_in_pieces():
    left, right = socket.socketpair()
    try:
        payload = encode({"x": "y" * 1000}, "k")
        data = frame(payload)
        for i in range(0, len(data), 7):       # header and body split across sends
            left.sendall(data[i:i + 7])
        left.shutdown(socket.SHUT_WR)
        assert read_frame(right) == payload
        assert read_frame(right) is None
    finally:
        left.close()
        right.close()


def test_read_frame_oversized_announced():
    stream = io.BytesIO(struct.pack(">I", 10_000) + b"x" * 10)
    with pytest.raises(CodecError, match="frame of 10000 bytes announced"):
        read_frame(stream, max_size=4096)
    assert stream.tell() == 4                   # nothing read beyond the header


def test_read_frame_truncated_header_and_body():
    with pytest.raises(CodecError, match="inside a frame header"):
        read_frame(io.BytesIO(b"\x00\x00"))
    with pytest.raises(CodecError, match=r"inside a frame body \(3 of 10 bytes\)"):
        read_frame(io.BytesIO(struct.pack(">I", 10) + b"abc"))


def test_read_frame_needs_socket_or_stream():
    with pytest.raises(TypeError):
        read_frame(b"not a stream")


def test_aread_frame():
    async def main():
        reader = asyncio.StreamReader()
        payload = encode({"a": 1}, "k")
        reader.feed_data(frame(payload) + struct.pack(">I", 99_999))
        reader.feed_eof()
        assert await codec.aread_frame(reader) == payload
        with pytest.raises(CodecError, match="announced"):
            await codec.aread_frame(reader, max_size=1000)

        empty = asyncio.StreamReader()
        empty.feed_eof()
        assert await codec.aread_frame(empty) is None

        cut = asyncio.StreamReader()
        cut.feed_data(struct.pack(">I", 10) + b"ab")
        cut.feed_eof()
        with pytest.raises(CodecError, match="inside a frame body"):
            await codec.aread_frame(cut)
    asyncio.run(main())
