"""The control surface: HTTP/1.1 + JSON on loopback, for tests, benchmarks and the demo.

Why: test code must shape the world (accounts, chats), act as simulated users, read what
accounts received, watch flood violations and drive the crowd, from any process, with
nothing but the standard library. Every operation is `POST /api/<name>` with a JSON object
of keyword arguments (GET with a query string works for argument-less reads), answered with
`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}` (HTTP 400/404).
Operations run on the server's event loop, so they see and change the same world as RPCs.
"""
from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse

from .tlcodec import read_object
from .world import WorldError, marked_id, unmark

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024


class ControlServer:
    def __init__(self, server):
        self.server = server
        self.port = None
        self._srv = None
        self._tasks: set = set()
        self.ops = {name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")}

    async def start(self, host: str, port: int) -> None:
        self._srv = await asyncio.start_server(self._client, host, port, reuse_address=True)
        self.port = self._srv.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._srv is not None:
            self._srv.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._srv.wait_closed()
            self._srv = None

    async def _client(self, reader, writer) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    method, target, _version = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    await self._respond(writer, 400, {"ok": False, "error": "bad request line"}, close=True)
                    break
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                if n < 0 or n > MAX_BODY:
                    await self._respond(writer, 400, {"ok": False, "error": "body too large"}, close=True)
                    break
                body = await reader.readexactly(n) if n else b""
                status, payload = self._handle(method, target, body)
                close = headers.get("connection", "").lower() == "close"
                await self._respond(writer, status, payload, close=close)
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - control clients must not hurt the server
            log.exception("control connection failed")
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _respond(self, writer, status: int, payload, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}.get(status, "?")
        writer.write(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "Connection: %s\r\n\r\n" % (status, reason, len(data), "close" if close else "keep-alive")
                      ).encode() + data)
        await writer.drain()

    def _handle(self, method: str, target: str, body: bytes):
        url = urllib.parse.urlsplit(target)
        path = url.path.rstrip("/")
        if not path.startswith("/api/"):
            return 404, {"ok": False, "error": "unknown path %s" % path}
        op = self.ops.get(path[5:])
        if op is None:
            return 404, {"ok": False, "error": "unknown operation %s" % path[5:]}
        try:
            if method == "POST" and body:
                kwargs = json.loads(body)
            else:
                kwargs = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            if not isinstance(kwargs, dict):
                raise ValueError("arguments must be a JSON object")
            return 200, {"ok": True, "result": op(**kwargs)}
        except WorldError as e:
            return 400, {"ok": False, "error": e.message, "code": e.code}
        except (TypeError, ValueError, KeyError) as e:
            return 400, {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        except Exception as e:  # noqa: BLE001
            log.exception("control operation %s failed", path)
            return 500, {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}

    # ------------------------------------------------------------------ helpers ------
    def message_dict(self, m, viewer: int) -> dict:
        w = self.server.world
        kind, ident = w.peer_for(m, viewer)
        fwd = None
        if m.fwd:
            fwd = {"from_id": marked_id(m.fwd.get("from_kind", "user"), m.fwd["from_id"]) if m.fwd.get("from_id") else None,
                   "date": m.fwd.get("date"), "channel_post": m.fwd.get("channel_post")}
        return {"id": m.id, "from_id": m.from_id, "peer": marked_id(kind, ident), "text": m.text,
                "reply_to": m.reply_to, "date": m.date, "media": m.media["kind"] if m.media else None,
                "grouped_id": m.grouped_id, "fwd_from": fwd, "edited": m.edit_date is not None,
                "post": m.post, "out": m.from_id == viewer, "entities": self._entities(m)}

    @staticmethod
    def _entities(m):
        out = []
        for h in m.entities or ():
            e = read_object(bytes.fromhex(h))
            out.append({"type": type(e).__name__, "offset": e.offset, "length": e.length,
                        **({"url": e.url} if hasattr(e, "url") else {})})
        return out

    def chat_dict(self, c) -> dict:
        return {"chat_id": c.chat_id, "peer_id": marked_id(c.peer_kind, c.chat_id), "kind": c.kind,
                "title": c.title, "access_hash": c.access_hash, "username": c.username,
                "members": {str(k): v for k, v in c.members.items()}, "pts": c.pts}

    # ------------------------------------------------------------------ operations ---
    def op_create_account(self, kind, username=None, first_name=None, phone=None, provision_key=True,
                          last_name=None, simulated=False):
        s = self.server
        a = s.world.create_account(kind, username=username, first_name=first_name, last_name=last_name,
                                   phone=phone, simulated=bool(simulated), provision_key=bool(provision_key))
        s.accounts_file_dirty()
        return s.account_dict(a)

    def op_create_chat(self, kind, title, member_ids=(), admin_ids=(), username=None):
        c = self.server.world.create_chat(kind, title, [int(m) for m in member_ids],
                                          [int(a) for a in admin_ids], username=username)
        return self.chat_dict(c)

    def op_add_member(self, chat_id, user_id, role="member"):
        w = self.server.world
        c = w.chat(int(chat_id))
        w.add_member(c, int(user_id), role)
        return self.chat_dict(c)

    def op_chats(self):
        return [self.chat_dict(c) for c in self.server.world.chats.values()]

    def op_send_as(self, user_id, peer_id, text, reply_to=None):
        user_id, peer_id = int(user_id), int(peer_id)
        kind, ident = unmark(peer_id)
        m, pts = self.server.world.post_message(user_id, kind, ident, text,
                                                reply_to=int(reply_to) if reply_to else None)
        return {"id": m.id, "message_id": m.id, "date": m.date, "pts": pts, "peer": peer_id}

    def op_received(self, user_id, since_id=0, limit=100):
        uid = int(user_id)
        self.server.world.account(uid)
        return [self.message_dict(m, uid) for m in self.server.world.received(uid, int(since_id), int(limit))]

    def op_history(self, user_id, peer_id, limit=100):
        uid = int(user_id)
        kind, ident = unmark(int(peer_id))
        msgs, _total = self.server.world.get_history(uid, kind, ident, limit=int(limit))
        return [self.message_dict(m, uid) for m in msgs]

    def op_flood_stats(self):
        return self.server.flood.snapshot()

    def op_reset_flood(self):
        f = self.server.flood
        f.stats.total = 0
        f.stats.by_account.clear()
        f.stats.by_kind.clear()
        f._buckets.clear()  # noqa: SLF001 - the owner resets its limiter
        return f.snapshot()

    def op_set_limits(self, flood_limits=None, delay_ms=None, jitter_ms=None, **values):
        return self.server.set_limits(flood_limits, delay_ms, jitter_ms, **values)

    def op_crowd_start(self, bot_ids, users=10, rate_per_s=1.0, duration_s=None, text_prefix="hi"):
        return self.server.crowd.start(bot_ids, int(users), float(rate_per_s),
                                       float(duration_s) if duration_s is not None else None, text_prefix)

    def op_crowd_stop(self):
        return self.server.crowd.stop()

    def op_crowd_stats(self):
        return self.server.crowd.stats()

    def op_stats(self):
        return self.server.snapshot_stats()

    def op_accounts(self):
        s = self.server
        return [s.account_dict(a) for a in s.world.accounts.values()]

    def op_flush(self):
        self.server.store.flush()
        return True

    def op_ping(self):
        return "pong"
