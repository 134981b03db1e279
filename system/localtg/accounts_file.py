"""accounts.json: everything a client written by anyone needs to use a running local Telegram.

Why: other processes (backends, tests, third-party MTProto clients) must connect without
talking to the control surface: the file lists the server address, the RSA public key
(PKCS#1 PEM, to register before a fresh key exchange) and every account with its user id,
kind, username, phone or bot token, access hash and, when pre-provisioned, the 256-byte
auth key in hex (use it as the session's auth key on DC 2 to skip login entirely).
Written atomically (temp file + rename) so readers never see half a file.
"""
from __future__ import annotations

import json
import os

SCHEMA = 1


def write_json_atomic(path: str, data) -> None:
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def accounts_document(server) -> dict:
    return {
        "schema": SCHEMA,
        "host": server.host,
        "port": server.port,
        "control_port": server.control_port,
        "dc_id": 2,
        "login_code": server.world.LOGIN_CODE,
        "rsa_public_key": server.rsa_key.public_pem,
        "rsa_fingerprint": server.rsa_key.fingerprint,
        "accounts": [server.account_dict(a) for a in server.world.accounts.values()],
    }


def write_accounts_file(server, path: str) -> None:
    write_json_atomic(path, accounts_document(server))


def load_accounts_file(path: str) -> dict:
    with open(path) as f:
        return json.load(f)
