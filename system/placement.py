"""Where an actor runs when a fleet spans several hosts (thespian conventions).

A fleet is one leader (the launcher with the root and its services, `tgfleet run`) and any number
of members (`tgfleet member`): thespian systems that joined the leader's convention and announce
the capability `tgfleet.host = "<name>"`. A bot whose config says `host = "<name>"` has its whole
bot group (supervisor, backend, bot) created on that member: the BotsSupervisor asks for the
group with the requirement `{"tgfleet.host": name}`, thespian finds the member whose
capabilities satisfy it, and the group's own children are created next to it. An actor with no
requirement runs where its parent runs.

Two identities matter once a parent and its child may live in different systems:
- the *machine* (its boot id): a PID means something only on the machine that issued it, so a
  supervisor signals a child's process only when both run on the same machine;
- the *system* (machine plus thespian admin port): an actor whose parent lives in another
  system is not its process's child, so the parent-death signal cannot end it when the parent
  dies; it watches its parent's probes instead (actors/base.py).
"""
from __future__ import annotations

import os
import secrets
import socket

HOST_CAPABILITY = "tgfleet.host"
CONVENTION_CAPABILITY = "Convention Address.IPv4"   # thespian's name
SYSTEM_ENV = "TGFLEET_SYSTEM_ID"          # set by FleetSystem, inherited by every actor process
HOST_ENV = "TGFLEET_HOST"                 # this system's `tgfleet.host` ("" on a plain leader)
DATA_DIR_ENV = "TGFLEET_DATA_DIR"         # this system's data directory (absolute)

_machine: str | None = None


def machine_id() -> str:
    """Where a pid means the same process: this kernel's boot id (else the host name) plus
    this PID namespace (two containers on one node share the boot id, not their pids)."""
    global _machine
    if _machine is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as fh:
                boot = fh.read().strip()
        except OSError:
            boot = socket.gethostname()
        try:
            pidns = str(os.stat("/proc/self/ns/pid").st_ino)
        except OSError:
            pidns = "?"
        _machine = f"{boot}:{pidns}"
    return _machine


def announce_system(admin_port: int | None, host: str = "", data_dir: str = "") -> str:
    """Called once per actor system, before any actor exists (actor processes inherit it)."""
    # the port for people reading logs; the nonce because two systems can share a port number
    # (one per container, or one after another in the same process)
    system = f"{machine_id()}/{admin_port or os.getpid()}.{secrets.token_hex(4)}"
    os.environ[SYSTEM_ENV] = system
    os.environ[HOST_ENV] = host
    if data_dir:
        os.environ[DATA_DIR_ENV] = os.path.abspath(data_dir)
    return system


def system_id() -> str:
    return os.environ.get(SYSTEM_ENV) or f"{machine_id()}/{os.getpid()}"


def host_name() -> str:
    return os.environ.get(HOST_ENV, "")


def machine_of(system: str) -> str:
    """The machine part of a system id (see `announce_system`)."""
    return system.split("/", 1)[0]


def same_machine(system: str) -> bool:
    """True when `system` (another actor's system id) is on this machine; unknown ("") counts
    as this machine, as it always was before placement existed."""
    return not system or machine_of(system) == machine_id()


def local_data_dir(sub: str, fallback: str | None) -> str | None:
    """`sub` under this system's data directory (set by its launcher), else `fallback`."""
    base = os.environ.get(DATA_DIR_ENV)
    return os.path.join(base, sub) if base else fallback


def requirements_for(host: str) -> dict | None:
    return {HOST_CAPABILITY: host} if host else None


def fits(capabilities: dict, requirements: dict | None) -> bool:
    """thespian's capability check for every tgfleet actor: no requirement fits anywhere; a
    host requirement fits only the system that announces that host."""
    want = (requirements or {}).get(HOST_CAPABILITY)
    if not want:
        return True
    return (capabilities or {}).get(HOST_CAPABILITY) == want


def parse_convention(text: str) -> tuple[str, int]:
    """'HOST:PORT' of the leader's thespian admin -> (host, port); ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected 'HOST:PORT' of the leader's admin, got {text!r}")
    return host, int(port)
