"""The unencrypted auth key exchange (https://core.telegram.org/mtproto/auth_key).

Why: an unmodified client with an empty session must be able to create an auth key with
the local Telegram exactly as with the real one: req_pq_multi -> resPQ, req_DH_params ->
server_DH_params_ok, set_client_DH_params -> dh_gen_ok. One Handshake object lives on each
connection; a violated step raises HandshakeError and the connection is closed.

The pq to factor is small and fixed (Telegram's documented example); clients factor it in
microseconds. The server's DH secret is fresh per exchange.
"""
from __future__ import annotations

import os
import time
from hashlib import sha1

from telethon.crypto import AES, AuthKey
from telethon.helpers import generate_key_data_from_nonce
from telethon.tl import functions as F
from telethon.tl import types as T

from .crypto import DH_G, DH_PRIME, ServerRSAKey
from .tlcodec import read_object

_P, _Q = 1229739323, 1402015859
_PQ = (_P * _Q).to_bytes(8, "big")
_SAFETY = 2 ** (2048 - 64)


class HandshakeError(Exception):
    """A key-exchange step failed: the connection is closed."""


def _b(value: int, length: int) -> bytes:
    return value.to_bytes(length, "little", signed=True)


class Handshake:
    """State of one key exchange. `handle(request)` returns the TL response object, or a
    tuple ("done", auth_key_bytes, response) when a key was created."""

    def __init__(self, rsa_key: ServerRSAKey):
        self.rsa_key = rsa_key
        self.nonce = None
        self.server_nonce = None
        self.new_nonce = None
        self.a = None
        self.tmp_key = None
        self.tmp_iv = None

    def handle(self, req):
        if isinstance(req, (F.ReqPqMultiRequest, F.ReqPqRequest)):
            return self._req_pq(req)
        if isinstance(req, F.ReqDHParamsRequest):
            return self._req_dh(req)
        if isinstance(req, F.SetClientDHParamsRequest):
            return self._set_client_dh(req)
        raise HandshakeError("unexpected unencrypted message %s" % type(req).__name__)

    def _req_pq(self, req):
        self.nonce = req.nonce
        self.server_nonce = int.from_bytes(os.urandom(16), "little", signed=True)
        return T.ResPQ(nonce=self.nonce, server_nonce=self.server_nonce, pq=_PQ,
                       server_public_key_fingerprints=[self.rsa_key.fingerprint])

    def _check_nonces(self, obj):
        if self.nonce is None or obj.nonce != self.nonce or obj.server_nonce != self.server_nonce:
            raise HandshakeError("nonce mismatch")

    def _req_dh(self, req):
        self._check_nonces(req)
        if req.public_key_fingerprint != self.rsa_key.fingerprint:
            raise HandshakeError("unknown RSA fingerprint %s" % req.public_key_fingerprint)
        inner = None
        for kind, blob in self.rsa_key.decrypt_inner_data(req.encrypted_data):
            try:
                if kind == "sha1":
                    obj = read_object(blob[20:])
                    if sha1(bytes(obj)).digest() != blob[:20]:
                        continue
                else:
                    obj = read_object(blob)
            except Exception:  # noqa: BLE001 - a wrong candidate is expected; try the next one
                continue
            if hasattr(obj, "new_nonce") and hasattr(obj, "pq"):
                inner = obj
                break
        if inner is None:
            raise HandshakeError("could not decrypt p_q_inner_data")
        self._check_nonces(inner)
        if int.from_bytes(inner.p, "big") * int.from_bytes(inner.q, "big") != int.from_bytes(_PQ, "big"):
            raise HandshakeError("wrong factorization")
        self.new_nonce = inner.new_nonce
        self.tmp_key, self.tmp_iv = generate_key_data_from_nonce(self.server_nonce, self.new_nonce)
        while True:
            self.a = int.from_bytes(os.urandom(256), "big")
            g_a = pow(DH_G, self.a, DH_PRIME)
            if _SAFETY < g_a < DH_PRIME - _SAFETY:
                break
        answer = bytes(T.ServerDHInnerData(
            nonce=self.nonce, server_nonce=self.server_nonce, g=DH_G,
            dh_prime=DH_PRIME.to_bytes(256, "big"), g_a=g_a.to_bytes(256, "big"),
            server_time=int(time.time())))
        with_hash = sha1(answer).digest() + answer
        with_hash += os.urandom(-len(with_hash) % 16)
        return T.ServerDHParamsOk(nonce=self.nonce, server_nonce=self.server_nonce,
                                  encrypted_answer=AES.encrypt_ige(with_hash, self.tmp_key, self.tmp_iv))

    def _set_client_dh(self, req):
        self._check_nonces(req)
        if self.a is None:
            raise HandshakeError("set_client_DH_params before req_DH_params")
        if not req.encrypted_data or len(req.encrypted_data) % 16:
            raise HandshakeError("bad encrypted_data length")
        plain = AES.decrypt_ige(req.encrypted_data, self.tmp_key, self.tmp_iv)
        inner = read_object(plain[20:])
        if not isinstance(inner, T.ClientDHInnerData) or sha1(bytes(inner)).digest() != plain[:20]:
            raise HandshakeError("bad client_DH_inner_data")
        self._check_nonces(inner)
        g_b = int.from_bytes(inner.g_b, "big")
        if not (_SAFETY < g_b < DH_PRIME - _SAFETY):
            raise HandshakeError("g_b out of range")
        key = pow(g_b, self.a, DH_PRIME).to_bytes(256, "big")
        auth = AuthKey(key)
        ok = T.DhGenOk(nonce=self.nonce, server_nonce=self.server_nonce,
                       new_nonce_hash1=auth.calc_new_nonce_hash(self.new_nonce, 1))
        self.a = None  # one key per exchange
        return ("done", key, ok)
