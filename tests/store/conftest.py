"""Fixtures for the store tests: a FleetSystem on each base, always shut down, and every
process it started gone afterwards (killed by PID if shutdown left one behind)."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from thespian.actors import ActorExitRequest

from messages.lifecycle import Start, Started
from messages.store import StoreReply
from system.boot import FleetSystem
from tests.store.helpers import store_threads


def _descendants() -> dict[int, float]:
    """pid -> create_time of every process below this one (create_time guards against pid
    reuse when we later kill by pid)."""
    out = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            out[proc.pid] = proc.create_time()
        except psutil.NoSuchProcess:
            continue
    return out


def reap(pids: dict[int, float], timeout: float = 5.0) -> list[int]:
    """Wait for `pids` to exit; SIGKILL the ones still there after `timeout`. Returns the pids
    that had to be killed."""
    deadline = time.monotonic() + timeout
    alive = dict(pids)
    while alive and time.monotonic() < deadline:
        for pid, ctime in list(alive.items()):
            try:
                proc = psutil.Process(pid)
                if proc.create_time() != ctime or proc.status() == psutil.STATUS_ZOMBIE:
                    alive.pop(pid)
            except psutil.NoSuchProcess:
                alive.pop(pid)
        if alive:
            time.sleep(0.05)
    killed = []
    for pid, ctime in alive.items():
        try:
            if psutil.Process(pid).create_time() == ctime:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return killed


class Fleet:
    """A FleetSystem plus the few calls the store tests repeat."""

    def __init__(self, base: str, tmp_path):
        self.base = base
        self.tmp_path = tmp_path
        self.fs = FleetSystem(base)
        self.seen: dict[int, float] = {}
        self.closed = False
        self.top: list = []          # actors created here, for the in-process shutdown
        self.strays: list = []       # replies skipped by ask_for

    def remember_processes(self):
        self.seen.update(_descendants())

    def db(self, name: str = "store.db") -> str:
        return str(self.tmp_path / name)

    def create(self, actor_class: str):
        addr = self.fs.create(actor_class)
        self.top.append(addr)
        return addr

    def start_store(self, path: str | None = None, **args):
        """A StoreActor created directly and started; returns its address."""
        addr = self.create("actors.store.StoreActor")
        args.setdefault("path", path or self.db())
        started = self.fs.ask(addr, Start("store", args, {}, "store"), 15)
        assert isinstance(started, Started), f"store did not start: {started!r}"
        self.remember_processes()
        return addr

    def ask_for(self, addr, msg, accept, timeout: float = 10.0):
        """Ask, skipping replies that `accept` refuses (late answers to earlier tells; they are
        kept in `self.strays`). Returns the accepted reply or None on timeout."""
        deadline = time.monotonic() + timeout
        reply = self.fs.ask(addr, msg, timeout)
        while reply is not None and not accept(reply):
            self.strays.append(reply)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            reply = self.fs.listen(left)
        return reply

    def call(self, addr, msg, timeout: float = 10.0) -> StoreReply:
        reply = self.ask_for(addr, msg, lambda r: isinstance(r, StoreReply)
                             and r.request_id == msg.request_id, timeout)
        assert reply is not None, f"no reply to {msg!r} within {timeout}s"
        return reply

    def ok(self, addr, msg, timeout: float = 10.0):
        reply = self.call(addr, msg, timeout)
        assert reply.ok, f"{msg!r} failed: {reply.error}"
        return reply.value

    def collect(self, want: set[str], timeout: float = 10.0) -> dict[str, StoreReply]:
        """Listen for StoreReplies to earlier tells until every id in `want` is in, or
        nothing arrives for `timeout` seconds."""
        got: dict[str, StoreReply] = {}
        while want - set(got):
            msg = self.fs.listen(timeout)
            if msg is None:
                break
            if isinstance(msg, StoreReply):
                got[msg.request_id] = msg
        return got

    def shutdown(self):
        """Idempotent: shut the system down once, then make sure its processes are gone."""
        if self.closed:
            return
        self.closed = True
        self.remember_processes()
        try:
            if self.base == "inprocess":
                # simpleSystemBase.shutdown() only unloads sources: it never tells the actors
                # to exit, so their on_stop (closing threads and databases) would never run.
                for addr in reversed(self.top):
                    self.fs.tell(addr, ActorExitRequest())
            self.fs.shutdown()
        finally:
            killed = reap(self.seen)
            if killed:
                print(f"killed leftover processes: {killed}")
        if self.base == "inprocess":
            deadline = time.monotonic() + 5
            while store_threads() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not store_threads(), f"store threads left running: {store_threads()}"


@pytest.fixture(params=["inprocess", "processes"])
def fleet(request, tmp_path):
    f = Fleet(request.param, tmp_path)
    try:
        yield f
    finally:
        f.shutdown()


@pytest.fixture
def proc_fleet(tmp_path):
    f = Fleet("processes", tmp_path)
    try:
        yield f
    finally:
        f.shutdown()
