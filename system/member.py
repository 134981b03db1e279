"""`tgfleet member` / `ops/member`: this host joins a leader's fleet and runs the bots placed on it.

A member is a thespian system (processes base) that joins the leader's convention
(`system.convention = "LEADER:ADMIN_PORT"`) and announces `tgfleet.host = system.host`. It
starts no actors of its own besides a guard: the leader's BotsSupervisor creates here the bot
groups whose config says `host = "<this system.host>"` (system/placement.py), and everything else
(root, store, limiter, metrics, control) stays on the leader. Operate the whole fleet from the
leader (`ops/ctl` there); `ctl status` shows where each actor runs.

Lifecycle: on SIGTERM/SIGINT the member shuts its actor system down (the groups placed here exit,
and the leader's supervisors will place them again when a member with this host returns). If the
launcher is SIGKILLed, the guard actor ends the admin and with it every actor placed here
(actors/memberguard.py). If the leader dies, each group placed here stops itself once the
leader's probes have been missing for `probe_misses + 2` intervals (actors/base.py).
"""
from __future__ import annotations

import argparse
import logging
import logging.config
import os
import signal
import sys
import threading
import time

import psutil

from messages.lifecycle import Start, Started
from system import memmerge
from system.config import ConfigError, load_config
from system.launcher import PRELOAD_LIBRARIES, preload_for_fork
from system.logs import log_defs_of
from system.procguard import pid_alive

log = logging.getLogger("tgfleet.member")

ADMIN_CHECK_S = 2.0


def check_member_config(cfg: dict) -> None:
    sysc = cfg["system"]
    if sysc["base"] != "processes":
        raise ConfigError("system.base: a member needs 'processes' (thespian conventions)")
    if not sysc["host"]:
        raise ConfigError("system.host: a member needs a name; bots placed here say "
                          "host = \"<that name>\"")
    if not sysc["convention"]:
        raise ConfigError("system.convention: a member needs the leader's admin as "
                          "\"HOST:PORT\" (the leader's system.bind_host and system.admin_port)")


class Member:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.fs = None
        self.admin_pid = 0
        self.stop_requested = False

    def _signal(self, signum, frame):
        log.info("signal %s: stopping", signum)
        self.stop_requested = True

    def start(self) -> None:
        from system.boot import FleetSystem, port_open
        cfg, sysc = self.cfg, self.cfg["system"]
        os.makedirs(sysc["data_dir"], exist_ok=True)
        # Any library may be placed here: import them all before the admin forks (shared
        # copy-on-write by every actor process, as on the leader).
        preload_for_fork({"system": sysc, "bots": [{"library": lib}
                                                   for lib in PRELOAD_LIBRARIES]})
        try:
            print(memmerge.apply(sysc["memory_merge"], "processes"), flush=True)
        except memmerge.MemoryMergeError as exc:
            raise ConfigError(str(exc)) from None
        self.fs = FleetSystem("processes", admin_port=sysc["admin_port"],
                              bind_host=sysc["bind_host"], log_defs=log_defs_of(cfg),
                              host=sysc["host"], convention=sysc["convention"],
                              data_dir=sysc["data_dir"])
        guard = self.fs.create("actors.memberguard.MemberGuard")
        reply = self.fs.ask(guard, Start("guard", {}, {"launcher_pid": os.getpid()},
                                         f"member:{sysc['host']}/guard"), 30, expect=Started)
        if not isinstance(reply, Started):
            raise RuntimeError(f"the member guard did not start: {reply!r}")
        self.admin_pid = psutil.Process(reply.pid).ppid()   # the guard is the admin's child
        self.port_open = port_open
        print(f"tgfleet member: host {sysc['host']!r}, admin {sysc['bind_host']}:"
              f"{self.fs.admin_port}, joined the convention at {sysc['convention']}, "
              f"data {os.path.abspath(sysc['data_dir'])}", flush=True)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        self.start()
        next_check = time.monotonic() + ADMIN_CHECK_S
        while not self.stop_requested:
            time.sleep(0.25)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + ADMIN_CHECK_S
                if not self.port_open(self.cfg["system"]["bind_host"], self.fs.admin_port):
                    print("tgfleet member: the actor system died (admin port closed)",
                          flush=True)
                    self.shutdown()
                    return 1
        self.shutdown()
        print("tgfleet member: stopped", flush=True)
        return 0

    def shutdown(self) -> None:
        """thespian's orderly shutdown, bounded by system.shutdown_timeout_s: it can wait on
        a leader that is gone. Past that, thespian's admin is SIGKILLed, and every actor
        process of this member with it (parent-death signal)."""
        if self.fs is None:
            return
        fs, self.fs = self.fs, None
        fs.top_level.clear()   # the guard goes with the system
        done = threading.Thread(target=fs.shutdown, name="member-shutdown", daemon=True)
        done.start()
        done.join(self.cfg["system"]["shutdown_timeout_s"])
        if done.is_alive() and self.admin_pid and pid_alive(self.admin_pid):
            print(f"tgfleet member: the actor system did not stop within "
                  f"{self.cfg['system']['shutdown_timeout_s']:g}s; ending its admin "
                  f"(pid {self.admin_pid})", flush=True)
            os.kill(self.admin_pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tgfleet member", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True,
                   help="TOML config: [system] base = 'processes', host, convention, admin_port")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
        check_member_config(cfg)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(log_defs_of(cfg))
    member = Member(cfg)
    try:
        return member.run()
    except Exception:
        log.exception("tgfleet member failed")
        member.shutdown()
        return 1


if __name__ == "__main__":
    sys.exit(main())
