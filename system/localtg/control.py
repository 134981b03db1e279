"""ControlClient: a small blocking stdlib client for the local Telegram's control surface.

Why: tests, benchmarks and the demo drive the local Telegram from other processes and
threads without an event loop. One persistent HTTP/1.1 connection per client (reconnects
on failure); every method returns plain dicts/lists and raises ControlError on an error.
Not thread-safe: use one ControlClient per thread.

    c = ControlClient("127.0.0.1", control_port)
    bot = c.create_account("bot")
    user = c.create_account("user")
    c.send_as(user["user_id"], bot["user_id"], "/start")
"""
from __future__ import annotations

import http.client
import json


class ControlError(Exception):
    """The control surface refused an operation (message as Telegram would word it)."""


class ControlClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self._conn = None

    # ------------------------------------------------------------------ transport ----
    def call(self, op: str, **kwargs):
        """POST /api/<op> with kwargs as JSON; returns the result or raises ControlError."""
        body = json.dumps(kwargs).encode()
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("POST", "/api/" + op, body, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                data = json.loads(resp.read() or b"null")
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        if not isinstance(data, dict) or not data.get("ok"):
            raise ControlError(data.get("error") if isinstance(data, dict) else repr(data))
        return data["result"]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ world --------
    def create_account(self, kind: str, username=None, first_name=None, phone=None,
                       provision_key: bool = True, **extra) -> dict:
        """kind 'bot'|'user'. Returns user_id, kind, username, phone or bot_token, access_hash,
        auth_key_hex (if provision_key), dc_id=2, host, port."""
        return self.call("create_account", kind=kind, username=username, first_name=first_name,
                         phone=phone, provision_key=provision_key, **extra)

    def create_chat(self, kind: str, title: str, member_ids, admin_ids=(), username=None) -> dict:
        """kind 'group' (basic group), 'supergroup' or 'channel' (broadcast; only admins post).
        Returns chat_id, peer_id (as clients see it: -id or -100...id), kind, title, members."""
        return self.call("create_chat", kind=kind, title=title, member_ids=list(member_ids),
                         admin_ids=list(admin_ids), username=username)

    def add_member(self, chat_id: int, user_id: int, role: str = "member") -> dict:
        return self.call("add_member", chat_id=chat_id, user_id=user_id, role=role)

    def chats(self) -> list:
        return self.call("chats")

    def send_as(self, user_id: int, peer_id: int, text: str, reply_to=None) -> dict:
        """Make account `user_id` send `text` to a user id, or a group/channel peer id
        (-chat_id, -100...). Returns {"id": message id, ...}; pushed to connected recipients."""
        return self.call("send_as", user_id=user_id, peer_id=peer_id, text=text, reply_to=reply_to)

    def received(self, user_id: int, since_id: int = 0, limit: int = 100) -> list:
        """Messages `user_id` received (not sent) with id > since_id, oldest first: id, from_id,
        peer, text, reply_to, date, media ('photo'|'document'|None), grouped_id, fwd_from."""
        return self.call("received", user_id=user_id, since_id=since_id, limit=limit)

    def history(self, user_id: int, peer_id: int, limit: int = 100) -> list:
        return self.call("history", user_id=user_id, peer_id=peer_id, limit=limit)

    def accounts(self) -> list:
        return self.call("accounts")

    # ------------------------------------------------------------------ limits -------
    def flood_stats(self) -> dict:
        """{"limits_on", "violations_total", "by_account": {id: n}, "by_kind", "limits"}"""
        return self.call("flood_stats")

    def reset_flood(self) -> dict:
        return self.call("reset_flood")

    def set_limits(self, flood_limits=None, delay_ms=None, jitter_ms=None, **values) -> dict:
        """Change at run time: flood limits on/off, delay/jitter (ms), and limit values
        (bot_per_second, chat_per_second, chat_burst, group_per_minute)."""
        return self.call("set_limits", flood_limits=flood_limits, delay_ms=delay_ms, jitter_ms=jitter_ms, **values)

    # ------------------------------------------------------------------ crowd --------
    def crowd_start(self, bot_ids, users: int, rate_per_s: float, duration_s=None, text_prefix: str = "hi") -> dict:
        return self.call("crowd_start", bot_ids=list(bot_ids), users=users, rate_per_s=rate_per_s,
                         duration_s=duration_s, text_prefix=text_prefix)

    def crowd_stop(self) -> dict:
        return self.call("crowd_stop")

    def crowd_stats(self) -> dict:
        """sent, answered, unanswered, duplicates, latency_ms {p50,p90,p99,max}, per_bot."""
        return self.call("crowd_stats")

    # ------------------------------------------------------------------ misc ---------
    def stats(self) -> dict:
        """messages_routed, connections, rpc_counts, rss_bytes, cpu_seconds, ..."""
        return self.call("stats")

    def flush(self) -> bool:
        return self.call("flush")

    def ping(self) -> str:
        return self.call("ping")
