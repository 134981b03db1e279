"""The control actor: the admin channel (ctl) into a running fleet.

Admin commands arrive as msgpack envelopes (messages/codec.py) on a loopback socket that this
actor serves from its own loop thread, so the CLI never unpickles anything and never risks
starting a second thespian system. Every request carries the admin token (a 0600 file generated
on first run, or TGFLEET_ADMIN_TOKEN). A bad request (wrong token, unknown command, bad
arguments, oversized or malformed frame) gets a clear error reply and changes nothing.

Commands: status, create, start, stop, restart, destroy, login, config-get, config-set, audit,
shutdown. Each one becomes messages to the store, the bots supervisor or the root; the answer is
sent when they have answered (or an error after `timeout_s`).
"""
from __future__ import annotations

import asyncio
import hmac
import itertools
import os
import secrets
import time

from actors.base import FleetActor
from messages import codec
from messages.backend import LoginStatus, LoginStatusRequest, ProvideLoginCode
from messages.lifecycle import (ChildAddress, ChildCommand, ChildCommandResult, Stop,
                                TreeStatus, TreeStatusRequest, WhereIs)
from messages.store import (DeleteBotConfig, GetBotConfig, KvGet, KvSet, PutBotConfig,
                            QueryAudit, StoreReply)
from system.config import ConfigError, validate_bot
from system.loopthread import LoopThread

TOKEN_ENV = "TGFLEET_ADMIN_TOKEN"
COMMANDS = ("status", "create", "start", "stop", "restart", "destroy", "login", "config-get",
            "config-set", "audit", "shutdown", "ping")


def load_or_create_token(path: str) -> str:
    """The admin token: from the environment, else the 0600 file (created on first run)."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip()
    if os.path.exists(path):
        with open(path) as fh:
            return fh.read().strip()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


class AdminError(Exception):
    """A request we refuse, with the message the operator sees."""


class ControlActor(FleetActor):
    kind = "control"
    start_async = True

    def on_start(self, args):
        self.host = args.get("host", "127.0.0.1")
        self.port = int(args.get("port", 19501))
        self.max_bytes = int(args.get("max_message_bytes", 65536))
        self.timeout_s = float(args.get("timeout_s", 10.0))
        self.config = args.get("config", {})
        self.token = load_or_create_token(args["token_file"])
        self.ids = itertools.count(1)
        self.pending: dict[str, dict] = {}     # request id -> {conn, deadline, step}
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.bridge = self.open_bridge()
        self.loop = LoopThread(f"control-{self.port}")
        self.loop.submit_to(self._serve(), self.bridge, "listening")
        self.every("sweep", 1.0)

    # ---- the socket side (loop thread) ---------------------------------------------------
    async def _serve(self):
        self.server = await asyncio.start_server(self._client, self.host, self.port,
                                                 limit=self.max_bytes + 16)
        return self.server.sockets[0].getsockname()[1]

    async def _client(self, reader, writer):
        conn = id(writer)
        self.writers[conn] = writer
        try:
            while True:
                try:
                    data = await codec.aread_frame(reader, self.max_bytes)
                except codec.CodecError as exc:
                    self._write(conn, codec.frame(codec.encode(
                        {"id": None, "ok": False, "error": str(exc)}, "admin.reply")))
                    await writer.drain()
                    break
                if data is None:
                    break
                self.bridge.post(("request", conn, data))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.log.info("admin client went away: %s", exc)
        except asyncio.CancelledError:
            self.log.debug("admin connection closed: control is stopping")
        finally:
            self.writers.pop(conn, None)
            writer.close()

    def _write(self, conn, data: bytes):
        writer = self.writers.get(conn)
        if writer is not None and not writer.is_closing():
            writer.write(data)

    def reply(self, conn, rid, ok: bool, result=None, error: str = ""):
        body = {"id": rid, "ok": ok}
        if ok:
            body["result"] = result
        else:
            body["error"] = error
        try:
            data = codec.frame(codec.encode(body, "admin.reply"))
        except codec.CodecError as exc:
            data = codec.frame(codec.encode({"id": rid, "ok": False,
                                             "error": f"reply too large: {exc}"}, "admin.reply"))
        self.loop.call_soon(self._write, conn, data)

    # ---- the actor side --------------------------------------------------------------------
    def on_bridge(self, item):
        tag = item[0]
        if tag == "listening":
            fut = item[1]
            exc = fut.exception()
            if exc is not None:
                raise RuntimeError(f"control port {self.host}:{self.port} unavailable: {exc}")
            self.log.info("admin socket on %s:%s", self.host, fut.result())
            self.report_started()
        elif tag == "request":
            self.handle_request(item[1], item[2])

    def handle_request(self, conn, data: bytes):
        rid = None
        try:
            kind, body = codec.decode(data, self.max_bytes, kind="admin.request")
            rid = body.get("id")
            token = body.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(token, self.token):
                raise AdminError("invalid admin token")
            command = body.get("command")
            args = body.get("args", {})
            if command not in COMMANDS:
                raise AdminError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
            if not isinstance(args, dict):
                raise AdminError("args must be a map")
            getattr(self, "cmd_" + command.replace("-", "_"))(conn, rid, args)
        except codec.CodecError as exc:
            self.reply(conn, rid, False, error=f"malformed request: {exc}")
        except (AdminError, ConfigError) as exc:
            self.reply(conn, rid, False, error=str(exc))

    # a pending request waits for one answer from another actor
    def expect(self, conn, rid, on_answer, what: str) -> str:
        key = f"ctl{next(self.ids)}"
        self.pending[key] = {"conn": conn, "rid": rid, "on": on_answer, "what": what,
                             "deadline": time.monotonic() + self.timeout_s}
        return key

    def answer(self, key: str, msg):
        entry = self.pending.pop(key, None)
        if entry is None:
            return
        try:
            entry["on"](entry["conn"], entry["rid"], msg)
        except (AdminError, ConfigError) as exc:
            self.reply(entry["conn"], entry["rid"], False, error=str(exc))

    def on_timer(self, name):
        if name == "sweep":
            now = time.monotonic()
            for key in [k for k, e in self.pending.items() if e["deadline"] < now]:
                e = self.pending.pop(key)
                self.reply(e["conn"], e["rid"], False,
                           error=f"timed out after {self.timeout_s:g}s waiting for {e['what']}")

    def on_StoreReply(self, msg: StoreReply, sender):
        self.answer(msg.request_id, msg)

    def on_ChildCommandResult(self, msg: ChildCommandResult, sender):
        self.answer(msg.request_id, msg)

    def on_TreeStatus(self, msg: TreeStatus, sender):
        self.answer(msg.request_id, msg)

    def on_ChildAddress(self, msg: ChildAddress, sender):
        self.answer(msg.request_id, msg)

    def on_LoginStatus(self, msg: LoginStatus, sender):
        self.answer(msg.request_id, msg)

    def service(self, key: str):
        addr = self.env.get(key)
        if addr is None:
            raise AdminError(f"the {key} service is not running")
        return addr

    @staticmethod
    def bot_name(args) -> str:
        name = args.get("name")
        if not isinstance(name, str) or not name:
            raise AdminError("missing argument: name")
        return name

    # ---- commands ----------------------------------------------------------------------------
    def cmd_ping(self, conn, rid, args):
        self.reply(conn, rid, True, {"pong": True, "pid": os.getpid()})

    def cmd_status(self, conn, rid, args):
        def done(conn, rid, msg: TreeStatus):
            rows = [{"path": r.path, "kind": r.kind, "state": r.state, "restarts": r.restarts,
                     "uptime_s": r.uptime_s, "last_error": r.last_error, "pid": r.pid,
                     "info": r.info, "host": r.host}
                    for r in msg.rows]
            self.reply(conn, rid, True, {"actors": rows})
        key = self.expect(conn, rid, done, "the tree status")
        self.send(self.service("root"), TreeStatusRequest(key))

    def cmd_create(self, conn, rid, args):
        cfg = args.get("config")
        if not isinstance(cfg, dict):
            raise AdminError("missing argument: config (a map describing the bot)")
        cfg = validate_bot(cfg, where="config",
                           base=self.config.get("system", {}).get("base", "inprocess"))
        from actors.handlers import resolve_handler
        for i, h in enumerate(cfg["handlers"]):
            try:
                resolve_handler(h["type"])
            except ValueError as exc:
                raise AdminError(f"config.handlers[{i}]: {exc}") from None
        name = cfg["name"]

        def exists(conn, rid, msg: StoreReply):
            if msg.ok:
                raise AdminError(f"bot {name!r} already exists")
            key = self.expect(conn, rid, stored, "the store")
            self.send(self.service("store"), PutBotConfig(key, name, cfg))

        def stored(conn, rid, msg: StoreReply):
            if not msg.ok:
                raise AdminError(f"store refused the config: {msg.error}")
            from actors.bots import bot_group_spec, groups_are_processes
            from messages.lifecycle import AddChild
            sup, sysc = self.config.get("supervision", {}), self.config.get("system", {})
            spec = bot_group_spec(cfg, os.path.abspath(sysc.get("data_dir", "./var")),
                                  {"probe_interval": sup.get("probe_interval_s", 2.0),
                                   "probe_misses": sup.get("probe_misses", 3)},
                                  groups_are_processes(sysc.get("process_unit", "")))
            key = self.expect(conn, rid, added, "the bots supervisor")
            self.send(self.service("bots"), AddChild(spec, bool(cfg["enabled"]), key))

        def added(conn, rid, msg: ChildCommandResult):
            if not msg.ok:
                raise AdminError(msg.error)
            self.reply(conn, rid, True, {"created": name, "started": bool(cfg["enabled"])})

        key = self.expect(conn, rid, exists, "the store")
        self.send(self.service("store"), GetBotConfig(key, name))

    def _child_op(self, conn, rid, args, op):
        name = self.bot_name(args)

        def done(conn, rid, msg: ChildCommandResult):
            if not msg.ok:
                raise AdminError(msg.error.replace("no such child", "no such bot"))
            self.reply(conn, rid, True, {op: name})
        key = self.expect(conn, rid, done, "the bots supervisor")
        self.send(self.service("bots"), ChildCommand(op, name, key))

    def cmd_start(self, conn, rid, args):
        self._child_op(conn, rid, args, "start")

    def cmd_stop(self, conn, rid, args):
        self._child_op(conn, rid, args, "stop")

    def cmd_restart(self, conn, rid, args):
        self._child_op(conn, rid, args, "restart")

    def cmd_destroy(self, conn, rid, args):
        name = self.bot_name(args)

        def removed(conn, rid, msg: ChildCommandResult):
            if not msg.ok:
                raise AdminError(msg.error.replace("no such child", "no such bot"))
            key = self.expect(conn, rid, deleted, "the store")
            self.send(self.service("store"), DeleteBotConfig(key, name))

        def deleted(conn, rid, msg: StoreReply):
            if not msg.ok:
                raise AdminError(msg.error)
            self.reply(conn, rid, True, {"destroyed": name})
        key = self.expect(conn, rid, removed, "the bots supervisor")
        self.send(self.service("bots"), ChildCommand("remove", name, key))

    def cmd_login(self, conn, rid, args):
        """Without `code`: the login state. With `code`: complete a user login."""
        name = self.bot_name(args)
        code = args.get("code")
        if code is not None and (not isinstance(code, str) or not code.isdigit()):
            raise AdminError("code must be the digits Telegram sent")

        def backend(conn, rid, msg: ChildAddress):
            if msg.address is None:
                raise AdminError(f"backend of {name!r} is not running (state: {msg.state})")
            key = self.expect(conn, rid, state, "the backend")
            if code is None:
                self.send(msg.address, LoginStatusRequest(key))
            else:
                self.send(msg.address, ProvideLoginCode(key, code, args.get("password", "")))

        def state(conn, rid, msg: LoginStatus):
            if msg.error:
                raise AdminError(msg.error)
            self.reply(conn, rid, True, {"bot": name, "state": msg.state, "phone": msg.phone})
        # The bot group runs inside the bots supervisor (actors/hosted.py): it answers for
        # "<bot>/backend" on the group's behalf.
        key = self.expect(conn, rid, backend, "the bots supervisor")
        self.send(self.service("bots"), WhereIs(f"{name}/backend", key))

    def cmd_config_get(self, conn, rid, args):
        key_name = args.get("key")
        if key_name is None:   # the effective configuration, token never included
            self.reply(conn, rid, True, {"config": {k: v for k, v in self.config.items()
                                                    if k != "bots"}})
            return
        if not isinstance(key_name, str) or not key_name:
            raise AdminError("key must be a non-empty string")

        def got(conn, rid, msg: StoreReply):
            if not msg.ok:
                raise AdminError(msg.error)
            self.reply(conn, rid, True, {"key": key_name, "value": msg.value})
        k = self.expect(conn, rid, got, "the store")
        self.send(self.service("store"), KvGet(k, key_name))

    def cmd_config_set(self, conn, rid, args):
        key_name, value = args.get("key"), args.get("value")
        if not isinstance(key_name, str) or not key_name or len(key_name) > 200:
            raise AdminError("key must be a non-empty string (at most 200 characters)")
        if "value" not in args:
            raise AdminError("missing argument: value")

        def done(conn, rid, msg: StoreReply):
            if not msg.ok:
                raise AdminError(msg.error)
            self.reply(conn, rid, True, {"key": key_name, "value": value})
        k = self.expect(conn, rid, done, "the store")
        self.send(self.service("store"), KvSet(k, key_name, value))

    def cmd_audit(self, conn, rid, args):
        limit = args.get("limit", 50)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10000:
            raise AdminError("limit must be an integer 1..10000")

        def done(conn, rid, msg: StoreReply):
            if not msg.ok:
                raise AdminError(msg.error)
            rows = [{"ts": e.ts, "path": e.path, "event": e.event, "reason": e.reason}
                    for e in msg.value]
            self.reply(conn, rid, True, {"events": rows})
        k = self.expect(conn, rid, done, "the store")
        self.send(self.service("store"), QueryAudit(k, limit, args.get("path", "")))

    def cmd_shutdown(self, conn, rid, args):
        self.reply(conn, rid, True, {"shutdown": "stopping children in reverse order"})
        self.send(self.service("root"), Stop("ctl shutdown"))

    def on_stop(self):
        loop = getattr(self, "loop", None)
        if loop is None:
            return
        server = getattr(self, "server", None)
        if server is not None:
            loop.call_soon(server.close)
        loop.stop()
