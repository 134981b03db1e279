"""Fixtures for the bot tests: a real thespian system on each base running the fleet's shape,
root -> [ratelimit, eventbus, (store)] + BotGroups -> [stand-in backend, BotActor], always shut
down, with no actor process left behind."""
from __future__ import annotations

import time

import pytest

from messages.lifecycle import ChildSpec, Start, Started
from system.boot import FleetSystem
from tests.bots.helpers import FAST_LIMITS, BotTree, forked_from_me, run_system

BASES = ["inprocess", "processes"]


@pytest.fixture(params=BASES)
def fleet(request):
    fs = FleetSystem(request.param)
    yield fs
    fs.shutdown()
    if request.param == "processes":
        left = []
        for _ in range(100):
            left = forked_from_me()
            if not left:
                break
            time.sleep(0.1)
        for p in left:
            p.kill()
        assert not left, f"processes left after shutdown: {[p.pid for p in left]}"


@pytest.fixture
def bot_tree(fleet):
    """start(groups, limits=..., store=..., eventbus=..., metrics=False) -> BotTree.
    limits: FAST_LIMITS (default) | RateLimitPolicy kwargs | 'silent' (a limiter that never
    answers) | 'none' (no limiter: the bot grants itself everything); store: None | a database
    path | 'silent'; eventbus: EventBus args; metrics: add a MetricsSink as 'metrics'."""
    def start(groups, limits=None, store=None, eventbus=None, metrics=False, timeout=30):
        limiter = "actors.ratelimit.RateLimiterActor" if limits != "silent" else \
            "tests.bots.tree.Silent"
        children = [ChildSpec("eventbus", "actors.eventbus.EventBus", dict(eventbus or {}))]
        if limits != "none":
            limits = FAST_LIMITS if limits is None else {} if limits == "silent" else limits
            children.insert(0, ChildSpec("ratelimit", limiter, dict(limits)))
        if store == "silent":
            children.append(ChildSpec("store", "tests.bots.tree.Silent"))
        elif store is not None:
            children.append(ChildSpec("store", "actors.store.StoreActor", {"path": store}))
        if metrics:   # first, so every later child finds it in env
            children.insert(0, ChildSpec("metrics", "tests.bots.tree.MetricsSink"))
        children.extend(groups)
        root = fleet.create("tests.bots.tree.ServiceRoot")
        args = {"children": children, "intensity": 20, "period": 10, "probe_interval": 0.5,
                "backoff": {"base_s": 0.02, "max_s": 0.2}, "start_timeout": 20}
        fleet.tell(root, Start("root", args, {}, "root"))
        # not fleet.ask: a failing child's restart waits on timers (see run_system)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(isinstance(r, Started) for r in run_system(fleet, 0.05)):
                return BotTree(fleet, root)
        raise AssertionError(f"tree did not start within {timeout}s")
    return start
