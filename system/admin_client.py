"""The admin client: what `ops/ctl` and tests use to talk to a running fleet's control actor.

One request per call over the loopback admin socket: a length-prefixed msgpack envelope
(messages/codec.py) with the token, the command and its arguments. It checks that something
listens before sending, so a stopped fleet gives "not running" instead of a hang.
"""
from __future__ import annotations

import itertools
import os
import socket

from messages import codec

_ids = itertools.count(1)


class AdminClientError(Exception):
    """The fleet answered with an error, or could not be reached."""


class NotRunning(AdminClientError):
    pass


def read_token(token_file: str) -> str:
    env = os.environ.get("TGFLEET_ADMIN_TOKEN")
    if env:
        return env.strip()
    try:
        with open(token_file) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        raise AdminClientError(f"admin token file not found: {token_file} (is this the data "
                               "directory of the running fleet? set TGFLEET_ADMIN_TOKEN or "
                               "--token-file)") from None
    except PermissionError:
        raise AdminClientError(f"cannot read admin token file {token_file}: permission "
                               "denied (run as the fleet's user)") from None


class AdminClient:
    def __init__(self, host: str, port: int, token: str, timeout: float = 30.0,
                 max_size: int = codec.DEFAULT_MAX):
        self.host, self.port, self.token = host, port, token
        self.timeout, self.max_size = timeout, max_size

    def raw(self, payload: bytes) -> dict:
        """Send bytes as one frame and decode the reply (tests use it for bad frames)."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise NotRunning(f"tgfleet is not running: nothing answers on "
                             f"{self.host}:{self.port} ({exc.strerror or exc})") from None
        with sock:
            sock.sendall(payload)
            data = codec.read_frame(sock, self.max_size)
        if data is None:
            raise AdminClientError("the fleet closed the connection without an answer")
        _, body = codec.decode(data, self.max_size, kind="admin.reply")
        return body

    def call(self, command: str, **args) -> dict:
        rid = next(_ids)
        body = {"id": rid, "token": self.token, "command": command, "args": args}
        reply = self.raw(codec.frame(codec.encode(body, "admin.request", self.max_size)))
        if not reply.get("ok"):
            raise AdminClientError(reply.get("error") or "request failed")
        return reply.get("result") or {}
