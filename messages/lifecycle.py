"""Lifecycle conversation between a supervisor and its children.

A thespian actor's constructor takes no arguments, so a child is created empty and then told
`Start(...)` with its arguments; it answers `Started` once it is ready (ordered start waits for
that). `Stop` asks for a clean stop; `Probe` is the periodic health check whose missing answer
marks a child as hung. `Crashed` is how a child that caught its own exception says why it is
going away before it exits (the supervisor then sees thespian's `ChildActorExited`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from messages import fastpickle

PERMANENT, TRANSIENT, TEMPORARY = "permanent", "transient", "temporary"
RESTART_TYPES = (PERMANENT, TRANSIENT, TEMPORARY)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """A child described as data, as in OTP: what to start, with what, and when to restart it."""
    id: str
    actor_class: str              # dotted path, importable in every process
    args: dict = field(default_factory=dict)
    restart: str = PERMANENT
    shutdown_timeout: float = 5.0
    kind: str = "worker"          # 'supervisor' children answer TreeStatusRequest too
    # thespian's targetActorRequirements, e.g. {"tgfleet.host": "b"}: create the child on the
    # system with those capabilities (system/placement.py); None: where its parent runs.
    requirements: dict | None = None

    def __post_init__(self):
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"child {self.id!r}: restart must be one of {RESTART_TYPES}, "
                             f"got {self.restart!r}")


@dataclass(frozen=True, slots=True)
class Start:
    child_id: str
    args: dict
    env: dict                     # shared addresses: root, store, ratelimit, eventbus, metrics
    path: str = ""                # e.g. "root/bots/alpha/backend" for logs and status


@dataclass(frozen=True, slots=True)
class Started:
    child_id: str
    pid: int
    kind: str = "worker"
    system: str = ""              # the child's actor system (placement.system_id): whose pid
    host: str = ""                # the `tgfleet.host` it runs on ("" : the leader's)


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str = "requested"


@dataclass(frozen=True, slots=True)
class Probe:
    seq: int


@dataclass(frozen=True, slots=True)
class ProbeReply:
    child_id: str
    seq: int
    healthy: bool = True
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Crashed:
    child_id: str
    error: str
    escalation: bool = False


@dataclass(frozen=True, slots=True)
class BridgeWake:
    """Sent by the in-process runner when a background thread posted to an actor's bridge.
    `readable`: select() saw the bridge's wake-up byte, so the drain must read it; an inline
    run (system/inline.py) delivers a post that wrote none, and skips that read."""
    readable: bool = True


# ---- supervisor management (from the control actor, or a parent) ------------------------

@dataclass(frozen=True, slots=True)
class AddChild:
    spec: ChildSpec
    start: bool = True
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class ChildCommand:
    """start | stop | restart | remove a child by id (OTP: restart_child, terminate_child,
    delete_child)."""
    op: str
    child_id: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class ChildCommandResult:
    request_id: str
    ok: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class StatusRow:
    path: str
    kind: str
    state: str
    restarts: int
    uptime_s: float
    last_error: str
    pid: int
    info: str = ""                # the actor's own one-line summary (`ChildInfo`)
    host: str = ""                # the `tgfleet.host` it runs on ("" : the leader's)


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """Child -> its supervisor, when it changes: a short line for `ctl status` (a backend's
    circuit breaker and login state, a bot's queue, retries and drops)."""
    child_id: str
    info: str


@dataclass(frozen=True, slots=True)
class TreeStatusRequest:
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class TreeStatus:
    request_id: str
    rows: tuple                   # tuple[StatusRow, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    """A transient child says it is done on purpose: its coming exit is normal, no restart."""
    child_id: str


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """Something a supervisor did or saw (start, stop, crash, restart, escalation), sent to the
    store's audit log and counted in the metrics."""
    ts: float
    path: str
    event: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EnvUpdate:
    """A shared service (store, rate limiter, ...) was restarted and has a new address: the root
    tells every child, supervisors pass it down, every actor updates `self.env[key]`."""
    key: str
    address: object


@dataclass(frozen=True, slots=True)
class WhereIs:
    """Ask a supervisor for the current address of one of its children."""
    child_id: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class ChildAddress:
    request_id: str
    child_id: str
    address: object           # None when the child is not running
    state: str = ""


fastpickle.install(globals())   # messages/fastpickle.py: same bytes, less work
