"""`ops/run` / `tgfleet run`: launch a fleet and keep it running until SIGTERM/SIGINT.

With no config file this is the embedded demo: the built-in local Telegram on 127.0.0.1, a
fleet of 10 demo bots (Telethon and Pyrogram; echo, autoreply and forward handlers), a crowd of
simulated users talking to them, the SQLite store under ./var/ and metrics on 9464. A real
deployment is the same command with `--config FILE` (and `[localtg] enabled = false`).

The launcher is the root supervisor's parent: it starts the root, shows progress ("N of M bots
running"), and on SIGTERM/SIGINT asks the root to stop (children in reverse order, store
flushed), waits for `RootExited`, shuts the actor system down and exits 0. On the processes base
it also watches thespian's admin process: if the admin dies, the launcher exits non-zero (the
actor processes die with it, see system/procguard.py), so systemd can restart the service.
"""
from __future__ import annotations

import argparse
import logging
import logging.config
import os
import shutil
import signal
import subprocess
import sys
import time

from messages.lifecycle import Start, Started, Stop, TreeStatus, TreeStatusRequest
from messages.system import RootExited
from system import affinity, memmerge
from system.config import ConfigError, load_config, validate_bot
from system.logs import log_defs_of

log = logging.getLogger("tgfleet.launcher")

DEMO_HANDLERS = ["echo", "autoreply", "forward", "echo", "autoreply",
                 "echo", "forward", "autoreply", "echo", "echo"]


def _rsa_key(path: str) -> str:
    """The local Telegram's RSA key: made once with openssl (fast), reused afterwards."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if shutil.which("openssl"):
            subprocess.run(["openssl", "genrsa", "-traditional", "-out", path, "2048"],
                           check=True, capture_output=True)
            os.chmod(path, 0o600)
        else:
            return ""   # the server generates its own (slower, first start only)
    return path


class LocalTelegramHandle:
    """The embedded local Telegram, in its own process, ended by PID when we stop."""

    def __init__(self, cfg: dict):
        from system.localtg.testing import run_local_telegram
        lt = cfg["localtg"]
        data_dir = os.path.abspath(cfg["system"]["data_dir"])
        key = _rsa_key(os.path.join(data_dir, "localtg", "rsa_private.pem"))
        self._cm = run_local_telegram(
            data_dir, flood_limits=lt["flood_limits"], delay_ms=lt["delay_ms"],
            port=lt["port"], control_port=lt["control_port"], rsa_key_file=key or None,
            reuse_test_key=False, log_level="WARNING", die_with_parent=True)
        self.tg = self._cm.__enter__()

    def close(self):
        self._cm.__exit__(None, None, None)


def demo_fleet(tg, cfg: dict) -> tuple[list[dict], list[int], dict]:
    """Accounts and bot configs for the demo (created once, found again on later runs)."""
    lt = cfg["localtg"]
    control = tg.control
    by_username = {a.get("username"): a for a in control.accounts()}
    server = {"host": tg.host, "port": tg.port, "rsa_public_key": tg.rsa_public_key}
    bots, bot_ids = [], []
    poster = by_username.get("demo_poster") or control.create_account(
        "user", username="demo_poster", first_name="Demo poster")
    accounts = []
    for i in range(lt["demo_bots"]):
        uname = f"demo{i + 1}_bot"
        acc = by_username.get(uname) or control.create_account("bot", username=uname,
                                                               first_name=f"Demo {i + 1}")
        accounts.append(acc)
        bot_ids.append(acc["user_id"])
    chats = {c.get("title"): c for c in control.chats()}
    forwarders = [a["user_id"] for i, a in enumerate(accounts)
                  if DEMO_HANDLERS[i % len(DEMO_HANDLERS)] == "forward"]
    group = chats.get("Demo news") or control.create_chat(
        "group", "Demo news", [poster["user_id"]] + forwarders)
    channel = chats.get("Demo digest") or control.create_chat(
        "channel", "Demo digest", [poster["user_id"]] + forwarders, admin_ids=forwarders)
    for i, acc in enumerate(accounts):
        kind = DEMO_HANDLERS[i % len(DEMO_HANDLERS)]
        handlers = [{"type": "echo"}]
        if kind == "autoreply":
            handlers = [{"type": "autoreply", "rules": [
                {"match": "hi", "reply": "Hello! You said: {text}"},
                {"match": "help", "reply": "I am a tgfleet demo bot."}],
                "default": "tgfleet demo: {first_word}"}]
        elif kind == "forward":
            handlers = [{"type": "echo"},
                        {"type": "forward", "sources": [group["peer_id"]],
                         "targets": [channel["peer_id"]]}]
        bots.append({"name": f"demo{i + 1}", "library": "telethon" if i % 2 == 0 else "pyrogram",
                     "account_kind": "bot", "token": acc["bot_token"], "handlers": handlers,
                     "server": server})
    return bots, bot_ids, {"poster": poster["user_id"], "group": group["peer_id"]}


PRELOAD = ("actors.root", "actors.bots", "actors.control", "actors.store", "actors.metrics",
           "actors.ratelimit", "actors.eventbus", "actors.bot", "actors.handlers.pipeline",
           "actors.backends.base")
PRELOAD_LIBRARIES = {"telethon": "actors.backends.telethon_backend",
                     "pyrogram": "actors.backends.pyrogram_backend",
                     "tdlib": "actors.backends.tdlib_backend"}


def preload_for_fork(cfg: dict) -> None:
    """Import what the actors need before the actor system forks, then freeze the heap.

    On the processes base every actor process is a fork of this one (through thespian's admin
    and the supervisors): modules imported here are shared copy-on-write by all of them instead
    of being imported again, privately, in each (Telethon and Pyrogram are 50-70 MB each). That
    is most of a backend's memory and most of its start-up time. `gc.freeze()` keeps the
    collector from touching (and so copying) these shared objects in every child."""
    if cfg["system"]["base"] != "processes" and not cfg.get("_force_preload"):
        return
    import gc
    import importlib
    names = list(PRELOAD) + sorted({PRELOAD_LIBRARIES[b["library"]] for b in cfg["bots"]
                                    if b.get("library") in PRELOAD_LIBRARIES})
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:   # the actor will report the same error when it starts
            log.warning("preload of %s failed: %s", name, exc)
    gc.collect()
    gc.freeze()


def settle_heap() -> int:
    """Once the fleet is up: collect, then move what survived (modules, actors, clients) out
    of the collector's reach with `gc.freeze()`.

    In-process base only: on the processes base the fleet lives in the actor processes, whose
    shared modules `preload_for_fork` froze before forking.

    Why: a full (generation 2) collection walks every tracked object. With Telethon, Pyrogram
    and the whole fleet in one process that took up to 49 ms here, and on the in-process base
    it stops every bot at once: at 500 msg/s it was the p99 (10-17 ms, max 33-42 ms). Frozen
    objects are still freed normally when their reference count drops; only cycles among them
    stay (start-up objects, which live as long as the fleet anyway)."""
    import gc
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class Launcher:
    def __init__(self, cfg: dict, base_override: str | None = None):
        self.cfg = cfg
        self.base = base_override or cfg["system"]["base"]
        cfg["system"]["base"] = self.base
        self.stop_requested = False
        self.tg = None
        self.fs = None
        self.root = None
        self.demo = None
        self.cpus = None
        self.heap_settled = False

    def _signal(self, signum, frame):
        log.info("signal %s: stopping", signum)
        self.stop_requested = True

    def start(self):
        from system.boot import FleetSystem
        cfg = self.cfg
        os.makedirs(cfg["system"]["data_dir"], exist_ok=True)
        t0 = time.monotonic()
        if cfg["localtg"]["enabled"]:
            self.tg = LocalTelegramHandle(cfg)
            tg = self.tg.tg
            print(f"local Telegram: MTProto 127.0.0.1:{tg.port}, control 127.0.0.1:"
                  f"{tg.control_port}, accounts {tg.accounts_path}", flush=True)
            if cfg["localtg"]["demo_bots"] > 0:
                bots, bot_ids, self.demo = demo_fleet(tg, cfg)
                names = {b["name"] for b in cfg["bots"]}
                cfg["bots"] = cfg["bots"] + [validate_bot(b, where=f"demo bot {b['name']}")
                                             for b in bots if b["name"] not in names]
                self.demo["bot_ids"] = bot_ids
        self.expected_bots = len(cfg["bots"])
        preload_for_fork(cfg)
        # After the local Telegram started (it must not share the pinned core), before any
        # actor thread exists (they inherit it).
        try:
            self.cpus = affinity.apply(cfg["system"]["cpu_affinity"], self.base)
        except affinity.AffinityError as exc:
            raise ConfigError(f"system.cpu_affinity: {exc}") from None
        # Before thespian forks anything: every actor process inherits the mark.
        try:
            print(memmerge.apply(cfg["system"]["memory_merge"], self.base), flush=True)
        except memmerge.MemoryMergeError as exc:
            raise ConfigError(str(exc)) from None
        if cfg["system"]["convention"]:
            raise ConfigError("system.convention: set on a member (`tgfleet member`), not on "
                              "the leader that `tgfleet run` starts")
        self.fs = FleetSystem(self.base, admin_port=cfg["system"]["admin_port"],
                              bind_host=cfg["system"]["bind_host"],
                              log_defs=log_defs_of(cfg),
                              host=cfg["system"]["host"], data_dir=cfg["system"]["data_dir"],
                              idle_gc_young=cfg["system"]["idle_gc_young"])
        self.root = self.fs.create("actors.root.RootSupervisor")
        reply = self.fs.ask(self.root, Start("root", {"config": cfg},
                                             {"launcher_pid": os.getpid()}, "root"), 60,
                            expect=(Started, RootExited))
        if not isinstance(reply, Started):
            raise RuntimeError(f"the root supervisor did not start: {reply!r}")
        self.root_pid = reply.pid
        print(f"tgfleet: base={self.base}, store {os.path.abspath(cfg['store']['path'])}, "
              f"metrics http://{cfg['metrics']['host']}:{cfg['metrics']['port']}/metrics, "
              f"admin 127.0.0.1:{cfg['control']['port']} (token "
              f"{os.path.abspath(cfg['control']['token_file'])}), "
              f"cores {'any' if self.cpus is None else ','.join(map(str, self.cpus))}, "
              f"started in {time.monotonic() - t0:.2f}s", flush=True)

    def status(self):
        st = self.fs.ask(self.root, TreeStatusRequest("launcher"), 5,
                         expect=(TreeStatus, RootExited))
        return st

    def bots_running(self, st) -> tuple[int, int]:
        groups = [r for r in st.rows if r.path.startswith("root/bots/")
                  and r.path.count("/") == 2]
        return sum(1 for r in groups if r.state == "running"), len(groups)

    def admin_alive(self) -> bool:
        if self.base != "processes":
            return True
        import psutil
        try:
            return psutil.Process(self.root_pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        self.start()
        last_progress = None
        crowd_started = False
        next_status = 0.0
        next_post = time.monotonic() + 5
        while not self.stop_requested:
            msg = self.fs.listen(0.25)
            if isinstance(msg, RootExited):
                print(f"tgfleet: root exited ({msg.reason})", flush=True)
                self.shutdown_rest()
                return msg.code
            now = time.monotonic()
            if now >= next_status:
                next_status = now + (1.0 if last_progress is None or
                                     last_progress[0] < last_progress[1] else 5.0)
                if not self.admin_alive():
                    print("tgfleet: the actor system died (root process gone)", flush=True)
                    self.shutdown_rest()
                    return 1
                st = self.status()
                if isinstance(st, RootExited):
                    self.shutdown_rest()
                    return st.code
                if st is not None:
                    up, total = self.bots_running(st)
                    if (up, total) != last_progress:
                        last_progress = (up, total)
                        if total and up == total and not self.heap_settled \
                                and self.base == "inprocess":
                            self.heap_settled = True
                            print(f"heap settled: {settle_heap()} objects frozen", flush=True)
                        print(f"{up} of {total} bots running", flush=True)
                    if self.demo and not crowd_started and total and up == total:
                        crowd_started = True
                        lt = self.cfg["localtg"]
                        self.tg.tg.control.crowd_start(self.demo["bot_ids"], lt["crowd_users"],
                                                       lt["crowd_rate"])
                        print(f"crowd: {lt['crowd_users']} simulated users talking to "
                              f"{len(self.demo['bot_ids'])} bots at {lt['crowd_rate']}/s",
                              flush=True)
            if self.demo and crowd_started and now >= next_post:
                next_post = now + 5
                self.tg.tg.control.send_as(self.demo["poster"], self.demo["group"],
                                           f"news at {time.strftime('%H:%M:%S')}")
        return self.stop()

    def stop(self) -> int:
        print("tgfleet: stopping (children in reverse order)", flush=True)
        if self.tg is not None and self.demo:
            try:
                self.tg.tg.control.crowd_stop()
            except Exception as exc:   # the server may already be gone; we are stopping anyway
                log.warning("crowd stop failed: %s", exc)
        self.fs.tell(self.root, Stop("signal"))
        deadline = time.monotonic() + self.cfg["system"]["shutdown_timeout_s"]
        code = 1
        while time.monotonic() < deadline:
            msg = self.fs.listen(0.25)
            if isinstance(msg, RootExited):
                code = msg.code
                break
            if not self.admin_alive():
                break
        else:
            print("tgfleet: root did not stop in time; forcing", flush=True)
        self.shutdown_rest()
        print("tgfleet: stopped", flush=True)
        return code

    def shutdown_rest(self):
        if self.fs is not None:
            if self.fs.base == "processes":
                self.fs.top_level.clear()   # the root has exited: nothing left to ask to exit
            self.fs.shutdown()
            self.fs = None
        if self.tg is not None:
            self.tg.close()
            self.tg = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tgfleet run", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="TOML config file (default: the embedded demo)")
    p.add_argument("--base", choices=["inprocess", "processes"], help="override system.base")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(log_defs_of(cfg))
    launcher = Launcher(cfg, args.base)
    try:
        return launcher.run()
    except ConfigError as exc:        # found only at start, e.g. cores this machine lacks
        print(f"config error: {exc}", file=sys.stderr)
        launcher.shutdown_rest()
        return 2
    except Exception:
        log.exception("tgfleet failed")
        launcher.shutdown_rest()
        return 1


if __name__ == "__main__":
    sys.exit(main())
