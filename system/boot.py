"""Start a thespian actor system on the configured base, with the same actor code on each.

- "inprocess": simpleSystemBase in this process, driven by `InProcessRunner`.
- "processes": multiprocTCPBase, one OS process per actor, admin on `admin_port` bound to
  loopback (see `system.loopback`).
`FleetSystem` hides the one difference callers see: on the in-process base an `ask` must pump the
runner while it waits, because replies can come from background threads.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import tempfile
import time

from thespian.actors import ActorSystem

from system.loopback import bind_loopback
from system.procguard import MAIN_PID_ENV
from system import childexit, forkheap, framestack, leanselect, placement
from system.idle_gc import DEFAULT_YOUNG_AT
from system.runner import InProcessRunner, install_quiet_receive

BASES = ("inprocess", "processes")


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Is something listening? (thespian would silently START a system if nothing were.)"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_PORTS = random.Random()          # its own generator: a test seeding `random` must not repeat ports
LOW_PORT = 10000                  # candidates start here, below the kernel's ephemeral range


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing is bound to now, for a listener started a moment later.

    Picked outside the kernel's ephemeral range when it can be: a port from `bind(0)` is one
    the kernel also hands to outgoing connections, and one of those took it before the
    listener bound it (CI: the control port "address already in use", five restarts, then the
    root escalated)."""
    top = _ephemeral_start()
    if top - LOW_PORT >= 1000:
        for _ in range(100):
            port = _PORTS.randrange(LOW_PORT, top)
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def thespian_log_defs(level: int = logging.WARNING, log_file: str | None = None) -> dict:
    """Logging for the actor processes: everything goes through thespian's logger process to
    stderr (or a file), at the given level."""
    handler = {"class": "logging.StreamHandler", "level": level}
    if log_file:
        handler = {"class": "logging.FileHandler", "filename": log_file, "level": level}
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "filters": {"deathsig": {"()": "system.procguard.DeathSignalFilter"}},
        "handlers": {"main": dict(handler, formatter="plain", filters=["deathsig"])},
        "root": {"handlers": ["main"], "level": level},
        "disable_existing_loggers": False,
    }


class FleetSystem:
    def __init__(self, base: str = "inprocess", admin_port: int | None = None,
                 bind_host: str = "127.0.0.1", log_level: int = logging.WARNING,
                 log_file: str | None = None, capabilities: dict | None = None,
                 log_defs: dict | None = None, host: str = "", convention: str = "",
                 data_dir: str = "", idle_gc_young: int = DEFAULT_YOUNG_AT):
        """`host` names this system for placement (`tgfleet.host`); `convention` ('HOST:PORT'
        of a leader's admin) makes it a member of that leader's convention (system/placement.py).
        Both need the processes base."""
        if base not in BASES:
            raise ValueError(f"system.base must be one of {BASES}, got {base!r}")
        self.base = base
        self.bind_host = bind_host
        self.top_level: list = []
        if (host or convention) and base != "processes":
            raise ValueError("placement on hosts (system.host, system.convention) needs "
                             "system.base = 'processes'")
        os.environ[MAIN_PID_ENV] = str(os.getpid())
        os.environ.setdefault("THESPLOG_FILE", os.path.join(tempfile.gettempdir(),
                                                            f"tgfleet-thespian-{os.getpid()}.log"))
        os.environ.setdefault("THESPLOG_THRESHOLD", "WARNING")
        bind_loopback(bind_host)
        defs = log_defs or thespian_log_defs(log_level, log_file)
        if base == "inprocess":
            self.admin_port = None
            placement.announce_system(None, "", data_dir)
            install_quiet_receive()
            self.asys = ActorSystem("simpleSystemBase", capabilities or {},
                                    logDefs=defs, transientUnique=True)
            self.runner = InProcessRunner(self.asys, idle_gc_young=idle_gc_young)
        else:
            self.admin_port = admin_port or free_port(bind_host)
            placement.announce_system(self.admin_port, host, data_dir)
            if port_open(bind_host, self.admin_port):
                raise RuntimeError(f"admin port {bind_host}:{self.admin_port} is already in use "
                                   "(another tgfleet system is running?)")
            framestack.pad_thespian_processes()
            forkheap.install()
            leanselect.install()
            childexit.install()
            caps = {"Admin Port": self.admin_port}
            if host:
                caps[placement.HOST_CAPABILITY] = host
            if convention:
                leader, port = placement.parse_convention(convention)
                caps[placement.CONVENTION_CAPABILITY] = f"{leader}:{port}"
            caps.update(capabilities or {})
            self.asys = ActorSystem("multiprocTCPBase", caps, logDefs=defs,
                                    transientUnique=True)
            self.runner = None

    def create(self, actor_class: str, global_name: str | None = None):
        addr = self.asys.createActor(actor_class, globalName=global_name)
        self.top_level.append(addr)
        return addr

    def tell(self, addr, msg):
        self.asys.tell(addr, msg)

    def ask(self, addr, msg, timeout: float = 5.0, expect: type | tuple | None = None):
        """Send `msg` and wait for a reply; with `expect`, replies of other types (late answers
        to earlier tells) are skipped until one of the expected type arrives."""
        deadline = time.monotonic() + timeout
        if self.runner is not None:
            resp = self.runner.ask(addr, msg, timeout)
        else:
            resp = self.asys.ask(addr, msg, timeout)
        while expect is not None and resp is not None and not isinstance(resp, expect):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            resp = self.listen(left)
        return resp

    def listen(self, timeout: float):
        if self.runner is not None:
            return self.runner.pump(timeout)
        return self.asys.listen(timeout)

    def wait_for(self, predicate, timeout: float, step: float = 0.05) -> bool:
        """Keep the system running until `predicate()` is true or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.runner is not None:
                self.runner.pump(step)
            else:
                time.sleep(step)
        return bool(predicate())

    def shutdown(self):
        """Stop every top-level actor (so each runs on_stop and ends its threads), then the
        system. simpleSystemBase's own shutdown only unloads sources and would leave them."""
        from thespian.actors import ActorExitRequest
        for addr in reversed(self.top_level):
            try:
                self.asys.tell(addr, ActorExitRequest())
            except Exception as exc:   # a dead system must still be shut down below
                logging.getLogger("tgfleet.boot").warning("exit request failed: %s", exc)
        self.top_level.clear()
        if self.runner is not None:
            self.runner.pump(0.05)
        self.asys.shutdown()
        if self.runner is not None:
            self.runner.close()
