"""LocalTelegram: the MTProto server on 127.0.0.1 and everything it owns.

Why: tgfleet's tests, benchmarks and demo need a Telegram that real, unmodified Telethon
and Pyrogram clients can use without a network: this object ties the pieces together and
owns their lifecycle (start order: data dir, RSA key, store, world, listeners; stop order
the reverse, with a final commit so nothing acknowledged is lost).

    tg = LocalTelegram("/tmp/tg", port=0, control_port=0, flood_limits=True, delay_ms=50)
    await tg.start()      # tg.port, tg.control_port are now bound on 127.0.0.1
    ...
    await tg.stop()

Everything binds to loopback by default; a non-loopback host is refused unless
`allow_remote=True` is passed explicitly.
"""
from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import time

import psutil

from .accounts_file import write_accounts_file
from .connection import Connection
from .control_server import ControlServer
from .crowd import Crowd
from .crypto import MsgIdGen, ServerRSAKey
from .flood import FloodConfig, FloodLimiter
from .hub import Hub
from .render import Renderer
from .rpc import Dispatcher
from .store import Store
from .world import World

log = logging.getLogger(__name__)


class LocalTelegram:
    def __init__(self, data_dir: str, host: str = "127.0.0.1", port: int = 0, control_port: int = 0,
                 flood_limits: bool = True, delay_ms: float = 0.0, jitter_ms: float = 0.0, *,
                 bot_per_second: float = 30.0, chat_per_second: float = 1.0, chat_burst: float = 3.0,
                 group_per_minute: float = 20.0, rsa_key_file: str | None = None,
                 write_accounts: bool = True, allow_remote: bool = False,
                 flush_interval: float = 0.1):
        """
        data_dir: where state lives (world.sqlite3, rsa_private.pem, files/, accounts.json).
        host/port: MTProto listener (port 0 = pick a free port; read `.port` after start).
        control_port: HTTP/JSON control surface on the same host (0 = free port).
        flood_limits: enforce Telegram's bot limits (FLOOD_WAIT_X); values below.
        delay_ms / jitter_ms: simulated network round trip added to every exchange; each
            direction gets delay_ms/2 (+- jitter_ms/2), so a strictly sequential client sees
            about delay_ms per request.
        rsa_key_file: reuse an existing PKCS#1 private key (tests share one to skip the
            few seconds of 2048-bit generation); default DATA_DIR/rsa_private.pem.
        """
        if not allow_remote and not ipaddress.ip_address(host).is_loopback:
            raise ValueError("LocalTelegram binds loopback only (got %r); pass allow_remote=True" % host)
        self.data_dir = os.path.abspath(data_dir)
        self.host = host
        self.port = port
        self.control_port = control_port
        self.flood = FloodLimiter(FloodConfig(enabled=flood_limits, bot_per_second=bot_per_second,
                                              bot_burst=bot_per_second, chat_per_second=chat_per_second,
                                              chat_burst=chat_burst, group_per_minute=group_per_minute,
                                              group_burst=group_per_minute))
        self.delay_ms = float(delay_ms)
        self.jitter_ms = float(jitter_ms)
        self.rsa_key_file = rsa_key_file
        self.write_accounts = write_accounts
        self.flush_interval = flush_interval
        self.stats = collections.Counter()
        self.msg_ids = MsgIdGen()
        self.connections: set[Connection] = set()
        self.phone_codes: dict[str, str] = {}
        self.uploads: dict = {}
        self.upload_bytes = 0
        self.media_by_id: dict = {}
        self.started_at = None
        self._server = None
        self._conn_tasks: set = set()
        self._accounts_timer = None
        self.rsa_key = None
        self.store = None
        self.world = None
        self.render = None
        self.hub = None
        self.rpc = None
        self.control = None
        self.crowd = None

    # ------------------------------------------------------------------ lifecycle ----
    async def start(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        loop = asyncio.get_running_loop()
        self.rsa_key = await loop.run_in_executor(None, ServerRSAKey.load_or_create, self.data_dir, self.rsa_key_file)
        self.store = Store(os.path.join(self.data_dir, "world.sqlite3"), flush_interval=self.flush_interval)
        self.world = World(self.store, self.data_dir)
        self.world.load()
        for m in self.world.messages.values():
            if m.media:
                self.media_by_id[m.media["id"]] = m.media
        self.render = Renderer(self.world)
        self.hub = Hub(self.world, self.render)
        self.world.hub = self.hub
        self.rpc = Dispatcher(self)
        self.crowd = Crowd(self)
        self._server = await asyncio.start_server(self._on_client, self.host, self.port,
                                                  limit=4 * 1024 * 1024, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self.control = ControlServer(self)
        await self.control.start(self.host, self.control_port)
        self.control_port = self.control.port
        self.started_at = time.time()
        self.write_accounts_file()
        log.info("local Telegram listening on %s:%d (control %d), data in %s", self.host, self.port,
                 self.control_port, self.data_dir)

    async def stop(self) -> None:
        if self.crowd is not None:
            self.crowd.stop()
        if self.control is not None:
            await self.control.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for conn in list(self.connections):
            conn._really_close()  # noqa: SLF001 - the owner closes its connections
        for t in list(self._conn_tasks):
            t.cancel()
        if self._conn_tasks:
            await asyncio.gather(*self._conn_tasks, return_exceptions=True)
        if self._accounts_timer is not None:
            self._accounts_timer.cancel()
            self._accounts_timer = None
        if self.store is not None:
            if self.write_accounts and self.world is not None:
                self.write_accounts_file()
            self.store.close()
            self.store = None
        log.info("local Telegram stopped")

    async def _on_client(self, reader, writer) -> None:
        conn = Connection(self, reader, writer)
        self.connections.add(conn)
        self.stats["connections_total"] += 1
        task = asyncio.current_task()
        self._conn_tasks.add(task)
        try:
            await conn.run()
        finally:
            self._conn_tasks.discard(task)

    def connection_closed(self, conn) -> None:
        self.connections.discard(conn)

    # ------------------------------------------------------------------ delay --------
    def delay_in(self) -> tuple[float, float]:
        return self.delay_ms / 2000.0, self.jitter_ms / 2000.0

    def delay_out(self) -> tuple[float, float]:
        return self.delay_ms / 2000.0, self.jitter_ms / 2000.0

    def set_limits(self, flood_limits=None, delay_ms=None, jitter_ms=None, **values) -> dict:
        if flood_limits is not None:
            self.flood.config.enabled = bool(flood_limits)
        if delay_ms is not None:
            self.delay_ms = float(delay_ms)
        if jitter_ms is not None:
            self.jitter_ms = float(jitter_ms)
        cfg = self.flood.config
        for k, v in values.items():
            if v is None:
                continue
            if not hasattr(cfg, k):
                raise ValueError("unknown limit %r" % k)
            setattr(cfg, k, float(v))
        return {"flood_limits": cfg.enabled, "delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms,
                "bot_per_second": cfg.bot_per_second, "chat_per_second": cfg.chat_per_second,
                "chat_burst": cfg.chat_burst, "group_per_minute": cfg.group_per_minute}

    # ------------------------------------------------------------------ files / stats
    def accounts_file_dirty(self) -> None:
        if not self.write_accounts or self._accounts_timer is not None:
            return
        self._accounts_timer = asyncio.get_running_loop().call_later(0.05, self.write_accounts_file)

    def write_accounts_file(self) -> None:
        self._accounts_timer = None
        if self.write_accounts:
            write_accounts_file(self, os.path.join(self.data_dir, "accounts.json"))

    def account_dict(self, a) -> dict:
        key = self.world.provisioned_key(a)
        d = {"user_id": a.user_id, "kind": a.kind, "username": a.username, "first_name": a.first_name,
             "phone": a.phone, "bot_token": a.bot_token, "access_hash": a.access_hash,
             "auth_key_hex": key.hex() if key else None, "dc_id": 2, "host": self.host, "port": self.port,
             "simulated": a.simulated}
        return d

    def snapshot_stats(self) -> dict:
        proc = psutil.Process()
        return {
            "messages_routed": self.world.messages_routed,
            "messages_total": len(self.world.messages),
            "connections": len(self.connections),
            "connections_total": self.stats["connections_total"],
            "update_targets": sum(len(v) for v in self.hub.by_user.values()),
            "accounts": len(self.world.accounts),
            "chats": len(self.world.chats),
            "rpc_counts": dict(self.rpc.counts),
            "rpc_errors": dict(self.rpc.errors),
            "counters": dict(self.stats),
            "flood": self.flood.snapshot(),
            "store": {"commits": self.store.commits, "writes": self.store.writes},
            "rss_bytes": proc.memory_info().rss,
            "cpu_seconds": sum(proc.cpu_times()[:2]),
            "uptime_s": time.time() - (self.started_at or time.time()),
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
        }

    def ready_info(self) -> dict:
        return {"host": self.host, "port": self.port, "control_port": self.control_port, "pid": os.getpid()}

