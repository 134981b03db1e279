"""Server-side MTProto 2.0 cryptography: the RSA key, the DH group, message encryption.

Why this module exists: the server needs the mirror image of what Telethon and Pyrogram do
on the client side. Block ciphers come from Telethon (`telethon.crypto.AES`, which uses
cryptg when installed) so the server is as fast as the clients; the rest is a few hashes.

- The RSA key is the server's identity for the key exchange. The project generates its own
  2048-bit key (never Telegram's), stores it in the data directory and publishes the public
  half (PKCS#1 PEM) in accounts.json so clients can register it.
- Both RSA paddings clients use are accepted: the old `sha1(data) + data + padding`
  (Telethon 1.x and Pyrogram send this) and `RSA_PAD` (MTProto 2.0 spec, sent by TDLib).
- Messages: msg_key = middle 16 bytes of sha256(auth_key[88+x : 120+x] + plaintext),
  x = 0 for client->server, 8 for server->client.
"""
from __future__ import annotations

import os
import struct
import time
from hashlib import sha256

import rsa
from telethon.crypto import AES, AuthKey

from system.localtg.fingerprint import rsa_fingerprint

__all__ = [
    "DH_PRIME", "DH_G", "ServerRSAKey", "MsgIdGen", "auth_key_id", "decrypt_client_message",
    "encrypt_server_message", "CryptoError",
]

# Telegram's published 2048-bit safe prime (https://core.telegram.org/mtproto/auth_key);
# Pyrogram refuses any other prime, so the local server uses the same group.
DH_PRIME = int(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B",
    16,
)
DH_G = 3


class CryptoError(Exception):
    """A packet failed a cryptographic check (wrong key, bad msg_key, bad padding)."""


class ServerRSAKey:
    """The server's RSA key pair: load from / save to PEM files, fingerprint, decrypt."""

    PRIVATE_FILE = "rsa_private.pem"

    def __init__(self, private: rsa.PrivateKey):
        self.private = private
        self.public = rsa.PublicKey(private.n, private.e)
        self.fingerprint = rsa_fingerprint(self.public.n, self.public.e)

    @property
    def public_pem(self) -> str:
        """PKCS#1 PEM ("BEGIN RSA PUBLIC KEY"), the form Telethon's `rsa.add_key` takes."""
        return self.public.save_pkcs1().decode()

    @classmethod
    def generate(cls) -> "ServerRSAKey":
        _pub, priv = rsa.newkeys(2048, poolsize=1)
        return cls(priv)

    @classmethod
    def load_or_create(cls, data_dir: str, key_file: str | None = None) -> "ServerRSAKey":
        """Use `key_file` if given, else DIR/rsa_private.pem, generating it on first start
        (2048-bit generation takes a few seconds in pure Python, hence the cache)."""
        path = key_file or os.path.join(data_dir, cls.PRIVATE_FILE)
        if os.path.exists(path):
            with open(path, "rb") as f:
                return cls(rsa.PrivateKey.load_pkcs1(f.read()))
        key = cls.generate()
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(key.private.save_pkcs1())
        os.replace(tmp, path)
        return key

    def decrypt_inner_data(self, encrypted: bytes) -> list[tuple[str, bytes]]:
        """Decrypt req_DH_params.encrypted_data into candidate plaintexts, each
        ("sha1", sha1(data) + data + padding) for the old scheme or ("rsa_pad", data +
        padding) for RSA_PAD. The handshake parses each and keeps the one whose hash checks."""
        if len(encrypted) != 256:
            return []
        c = int.from_bytes(encrypted, "big")
        if c >= self.private.n:
            return []
        raw = pow(c, self.private.d, self.private.n).to_bytes(256, "big")
        out = []
        temp_key = bytes(a ^ b for a, b in zip(raw[:32], sha256(raw[32:]).digest()))
        data_with_hash = AES.decrypt_ige(raw[32:], temp_key, bytes(32))
        data_with_padding = data_with_hash[:192][::-1]
        if sha256(temp_key + data_with_padding).digest() == data_with_hash[192:]:
            out.append(("rsa_pad", data_with_padding))
        if raw[0] == 0:
            out.append(("sha1", raw[1:]))
        return out


class MsgIdGen:
    """Server message ids: time-based, strictly increasing across the whole server, odd
    (1 mod 4 for responses, 3 mod 4 for everything else), as clients require."""

    def __init__(self):
        self._last = 0

    def next(self, response: bool = True) -> int:
        now = time.time()
        mid = (int(now) << 32) | (int((now % 1) * 2**32) & 0xFFFFFFFC)
        if mid <= self._last:
            mid = (self._last | 3) + 1
        mid = (mid & ~3) | (1 if response else 3)
        self._last = mid
        return mid


def auth_key_id(key: bytes) -> int:
    """The 64-bit id of an auth key, as the first 8 bytes of an encrypted packet (LE)."""
    return AuthKey(key).key_id


def _calc_key(auth_key: bytes, msg_key: bytes, x: int) -> tuple[bytes, bytes]:
    a = sha256(msg_key + auth_key[x: x + 36]).digest()
    b = sha256(auth_key[x + 40: x + 76] + msg_key).digest()
    return a[:8] + b[8:24] + a[24:32], b[:8] + a[8:24] + b[24:32]


def decrypt_client_message(auth_key: bytes, packet: bytes) -> bytes:
    """Decrypt a client->server packet (auth_key_id already matched). Returns the plaintext
    (salt, session_id, msg_id, seq_no, length, body, padding); raises CryptoError."""
    if len(packet) < 24 + 32 or (len(packet) - 24) % 16:
        raise CryptoError("encrypted packet has a bad length %d" % len(packet))
    msg_key = packet[8:24]
    aes_key, aes_iv = _calc_key(auth_key, msg_key, 0)
    plain = AES.decrypt_ige(packet[24:], aes_key, aes_iv)
    if sha256(auth_key[88:120] + plain).digest()[8:24] != msg_key:
        raise CryptoError("msg_key mismatch")
    return plain


def encrypt_server_message(auth_key: bytes, key_id: int, salt: int, session_id: int,
                           msg_id: int, seq_no: int, body: bytes) -> bytes:
    """Encrypt one server->client message (which may be a container)."""
    data = struct.pack("<qqqii", salt, session_id, msg_id, seq_no, len(body)) + body
    padding = os.urandom(-(len(data) + 12) % 16 + 12)
    plain = data + padding
    msg_key = sha256(auth_key[96:128] + plain).digest()[8:24]
    aes_key, aes_iv = _calc_key(auth_key, msg_key, 8)
    return struct.pack("<Q", key_id) + msg_key + AES.encrypt_ige(plain, aes_key, aes_iv)
