"""MTProto's RSA key fingerprint, with nothing heavier than hashlib.

The server (`crypto.ServerRSAKey`) announces its key by this number, and the clients' key
registries (`clients.register_rsa_key`) are keyed by it. It lives apart from crypto.py, which
imports Telethon, so a Pyrogram-only backend can compute it without importing Telethon.
"""
from __future__ import annotations

import struct
from hashlib import sha1


def tl_bytes(data: bytes) -> bytes:
    """TL `bytes` serialization: length prefix, data, zero padding to 4 bytes."""
    n = len(data)
    if n < 254:
        head = bytes([n])
        pad = (-(n + 1)) % 4
    else:
        head = bytes([254]) + n.to_bytes(3, "little")
        pad = (-n) % 4
    return head + data + b"\0" * pad


def int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def rsa_fingerprint(n: int, e: int) -> int:
    """The low 64 bits of SHA1(TL bytes n, TL bytes e), as a signed little-endian int."""
    return struct.unpack("<q", sha1(tl_bytes(int_bytes(n)) + tl_bytes(int_bytes(e))).digest()[-8:])[0]
