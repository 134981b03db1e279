"""Fixtures for the backend tests: real backends in real thespian trees, on both bases, against
a local Telegram subprocess (one per module), with every process we started ended by PID.

A test builds a tree with `fleet.group(...)`: a BotGroup (rest_for_one) whose children are
the backend under test, then `BackendProbe` (tests/support/backend_probe.py) playing the bot.
Services the backend finds in `Start.env` (a StoreActor, a rate-limiter stand-in) are started
at top level first and passed in the group's env.
"""
from __future__ import annotations

import logging
import os
import signal
import time

import psutil
import pytest
import pyrogram  # noqa: F401  imported before thespian forks: children start warm
import telethon  # noqa: F401

from actors.backends.base import BackendStats, BackendStatsRequest
from actors.backends.registry import BACKENDS
from messages.backend import LoginStatus, LoginStatusRequest, ProvideLoginCode
from messages.lifecycle import (ChildAddress, ChildSpec, Start, Started, TreeStatus,
                                TreeStatusRequest, WhereIs)
from messages.store import SessionGet, SessionPut, StoreReply
from system.boot import FleetSystem
from system.localtg.clients import LOGIN_CODE, register_rsa_key
from system.localtg.testing import run_local_telegram
from tests.support.backend_probe import Collect, Collected, SendActions, Sent

logging.getLogger("telethon").setLevel(logging.WARNING)
logging.getLogger("pyrogram").setLevel(logging.WARNING)

BASES = ["inprocess", "processes"]
API_HASH = "0123456789abcdef0123456789abcdef"


# ---- the local Telegram ---------------------------------------------------------------------

def local_telegram(tmp_path_factory, **kwargs):
    """A context manager: a local Telegram subprocess (killed by PID at exit)."""
    return run_local_telegram(tmp_path_factory.mktemp("localtg"), **kwargs)


@pytest.fixture(scope="module")
def tg(tmp_path_factory):
    """The module's local Telegram: flood limits on, no delay. Modules override it."""
    with local_telegram(tmp_path_factory) as server:
        register_rsa_key(server.rsa_public_key)
        yield server
        assert server.proc.poll() is None, "the local Telegram died during the tests"


@pytest.fixture(scope="module")
def tg_unlimited(tmp_path_factory):
    """A local Telegram with its flood limits off. A module uses it as its `tg` with
    `tg = tg_unlimited` (pytest takes a fixture's name from the module attribute)."""
    with local_telegram(tmp_path_factory, flood_limits=False) as server:
        register_rsa_key(server.rsa_public_key)
        yield server


def backend_args(tg, account: dict, library: str, tmp_path, **extra) -> dict:
    """Start.args of a backend for an account made with ControlClient.create_account."""
    args = {"name": f"{account['kind']}{account['user_id']}", "library": library,
            "account_kind": account["kind"], "api_id": 1, "api_hash": API_HASH,
            "server": {"host": tg.host, "port": tg.port, "rsa_public_key": tg.rsa_public_key},
            "data_dir": str(tmp_path), "health_interval_s": 1.0}
    if account["kind"] == "bot":
        args["token"] = account["bot_token"]
    else:
        args["phone"] = account["phone"]
    args.update(extra)
    return args


def rpc_count(tg, name: str) -> int:
    return tg.control.stats()["rpc_counts"].get(name, 0)


# ---- the actor system -------------------------------------------------------------------------

class Group:
    """A started BotGroup [backend, probe] and the calls tests make on it."""

    def __init__(self, fleet: "Fleet", root, name: str):
        self.fleet, self.root, self.name = fleet, root, name

    def where(self, child_id: str, timeout: float = 10.0):
        def find():
            reply = self.fleet.ask(self.root, WhereIs(child_id, "w"), 5, ChildAddress)
            return reply.address if reply is not None else None
        return self.fleet.poll(find, timeout, f"{child_id} running")

    def status(self) -> dict:
        st = self.fleet.ask(self.root, TreeStatusRequest("t"), 5, TreeStatus)
        assert st is not None, "the group did not answer a status request"
        return {r.path.split("/")[-1]: r for r in st.rows}

    def collect(self) -> Collected:
        got = self.fleet.ask(self.where("probe"), Collect(), 10, Collected)
        assert got is not None, "the probe did not answer"
        return got

    def wait_collect(self, predicate, timeout: float = 20.0, what: str = "condition"):
        """Poll the probe until predicate(collected) is true; return the collected data."""
        holder = {}

        def check():
            holder["c"] = self.collect()
            return predicate(holder["c"])
        self.fleet.poll(check, timeout, what, lambda: holder.get("c"))
        return holder["c"]

    def act(self, *items):
        """Send (action_id, action) pairs through the probe, as the bot would."""
        reply = self.fleet.ask(self.where("probe"), SendActions(tuple(items)), 10, Sent)
        assert reply is not None and reply.count == len(items), f"probe refused: {reply}"

    def results(self, ids, timeout: float = 30.0) -> dict:
        ids = set(ids)
        got = self.wait_collect(lambda c: ids <= {r.action_id for r in c.results}, timeout,
                                f"results for {sorted(ids)[:5]}...")
        return {r.action_id: r for r in got.results if r.action_id in ids}

    def stats(self) -> dict:
        reply = self.fleet.ask(self.where("backend"), BackendStatsRequest("s"), 10,
                               BackendStats)
        assert reply is not None, "the backend did not answer BackendStatsRequest"
        return reply.stats

    def login_status(self) -> LoginStatus:
        reply = self.fleet.ask(self.where("backend"), LoginStatusRequest("l"), 10, LoginStatus)
        assert reply is not None
        return reply

    def provide_code(self, code: str = LOGIN_CODE, timeout: float = 20.0) -> LoginStatus:
        reply = self.fleet.ask(self.where("backend"), ProvideLoginCode("code", code), timeout,
                               LoginStatus)
        assert reply is not None, "no LoginStatus after ProvideLoginCode"
        return reply

    def wait_status(self, predicate, timeout: float = 20.0, what: str = "status"):
        holder = {}

        def check():
            holder["s"] = self.status()
            return predicate(holder["s"])
        self.fleet.poll(check, timeout, what, lambda: holder.get("s"))
        return holder["s"]


class Fleet:
    """A FleetSystem on one base, with helpers to start the trees the tests need."""

    def __init__(self, base: str):
        self.base = base
        self.fs = FleetSystem(base)

    @property
    def inprocess(self) -> bool:
        return self.base == "inprocess"

    def ask(self, addr, msg, timeout, expect):
        return self.fs.ask(addr, msg, timeout, expect=expect)

    def tell(self, addr, msg):
        self.fs.tell(addr, msg)

    def idle(self, seconds: float):
        if self.fs.runner is not None:
            self.fs.listen(seconds)
        else:
            time.sleep(seconds)

    def poll(self, fn, timeout: float, what: str = "condition", last=None):
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} not reached within {timeout}s; last: "
                                     f"{last() if last else value!r}")
            self.idle(0.05)

    def start(self, actor_class: str, child_id: str, args: dict, env: dict | None = None,
              timeout: float = 30.0):
        addr = self.fs.create(actor_class)
        reply = self.ask(addr, Start(child_id, args, env or {}, child_id), timeout, Started)
        assert isinstance(reply, Started), f"{child_id} did not start: {reply!r}"
        return addr

    def store(self, path: str):
        return self.start("actors.store.StoreActor", "store", {"path": path})

    def stand_in(self, name: str = "ratelimit"):
        """A BackendProbe at top level, not attached to anything: a rate-limiter stand-in."""
        return self.start("tests.support.backend_probe.BackendProbe", name, {"attach": False})

    def group(self, args: dict, env: dict | None = None, probe: dict | None = None,
              backoff: dict | None = None, timeout: float = 40.0, **group_args) -> Group:
        name = args["name"]
        children = [
            ChildSpec("backend", BACKENDS[args["library"]], args, kind="backend",
                      shutdown_timeout=8.0),
            ChildSpec("probe", "tests.support.backend_probe.BackendProbe",
                      dict({"bot": name}, **(probe or {}))),
        ]
        sup = dict(group_args, children=children)
        sup.setdefault("backoff", backoff or {"base_s": 0.05, "max_s": 0.5})
        sup.setdefault("probe_interval", 0.5)
        sup.setdefault("start_timeout", 30.0)
        root = self.start("actors.supervisor.BotGroup", f"group-{name}", sup, env, timeout)
        return Group(self, root, name)

    def session_in_store(self, store, account: str):
        reply = self.ask(store, SessionGet("g", account), 10, StoreReply)
        assert reply is not None and reply.ok, reply
        return reply.value

    def put_session(self, store, account: str, data: bytes):
        reply = self.ask(store, SessionPut("p", account, data), 10, StoreReply)
        assert reply is not None and reply.ok, reply


def _descendants() -> dict[int, float]:
    out = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            out[proc.pid] = proc.create_time()
        except psutil.NoSuchProcess:
            continue
    return out


def _forked_from_me() -> list[psutil.Process]:
    """thespian's admin daemonizes: its processes keep our command line but not our parent."""
    me = psutil.Process()
    mine = me.cmdline()
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.pid != me.pid and p.info["cmdline"] == mine and \
                    p.info["status"] != psutil.STATUS_ZOMBIE and p.ppid() != me.pid:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _end(fleet: Fleet, before: set[int]):
    fleet.fs.shutdown()
    if fleet.base != "processes":
        return
    left = []
    for _ in range(100):
        left = [p for p in _forked_from_me() if p.pid not in before]
        if not left:
            break
        time.sleep(0.1)
    for p in left:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    assert not left, f"processes left after shutdown: {[p.pid for p in left]}"


@pytest.fixture(params=BASES)
def fleet(request):
    before = {p.pid for p in _forked_from_me()}
    f = Fleet(request.param)
    yield f
    _end(f, before)


@pytest.fixture
def inprocess_fleet():
    f = Fleet("inprocess")
    yield f
    _end(f, set())


@pytest.fixture
def processes_fleet():
    before = {p.pid for p in _forked_from_me()}
    f = Fleet("processes")
    yield f
    _end(f, before)
