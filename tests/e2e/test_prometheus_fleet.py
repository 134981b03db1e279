"""Every Grafana panel query returns data from a real Prometheus scraping a RUNNING fleet.

The fleet is the real thing (`python -m system.cli run`, in-process base, the embedded local
Telegram with its flood limits on, 4 demo bots and their crowd). `tests/metrics/
test_prometheus_real.py` checks the same queries against a tree of emitting test actors; this
test proves the real actors emit what the dashboard asks for, under the names and labels it uses.

Some panels show what only happens when something goes wrong (FLOOD_WAIT, rate-limit waits,
handler errors, queue drops, reconnects, restarts), so the test makes it happen, from outside,
the way an operator would see it happen:
- the local Telegram's per-chat limit is made stricter than the fleet's limiter (Telegram's
  limits vary per bot, so FLOOD_WAIT happens in real life too): FLOOD_WAIT answers, retries;
- one extra bot ("probe", created with `ctl create`) gets a burst of messages from one user:
  its limiter waits, its small queue (queue_max 3) drops, a handler raises on "boom"
  (tests/support/bad_handlers.py:Raising) and another publishes every message on the event bus
  (tests/bots/pubsub_handlers.py:Announce);
- the local Telegram answers slowly for a moment: the probe's answer times out (its
  action_timeout_s is 1 s), its breaker opens, and its backend reconnects;
- `ctl restart demo4`: a requested restart.

Prometheus is Debian's `prometheus` package (CI installs it in `.ci/run`); without the binary
the test is skipped.
"""
from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.e2e.helpers import localtg_of, metric, scrape, server_of, wait_until
from tests.metrics.stack import grafana_to_promql, load_dashboard, panel_exprs
from tests.support.prometheus import Prometheus
from tests.ops.conftest import start_fleet, stop_fleet

DEMO_BOTS = 4




def ctl_ok(fleet, *args):
    r = fleet.ctl("--json", *args)
    assert r.returncode == 0, f"ctl {args} failed: {r.stdout} {r.stderr}"
    return json.loads(r.stdout)["result"]


def bot_running(fleet, name: str) -> bool:
    rows = ctl_ok(fleet, "status")["actors"]
    return any(a["path"] == f"root/bots/{name}" and a["state"] == "running" for a in rows)


def make_trouble(fleet):
    """Everything the failure panels show, caused from outside (see the module docstring)."""
    port = fleet.ports["metrics"]
    tg = localtg_of(fleet)
    # Telegram stricter than the fleet's limiter (0.95/s, burst 2 per chat): FLOOD_WAIT answers
    tg.set_limits(chat_per_second=0.5, chat_burst=1)

    alice = tg.create_account("user", username="alice")
    probe = tg.create_account("bot", username="probe_bot")
    ctl_ok(fleet, "create", "probe", "--library", "telethon", "--config-json", json.dumps({
        "token": probe["bot_token"], "server": server_of(fleet), "queue_max": 3,
        # one action without an answer within 1 s opens the breaker; the reconnect that follows
        # proves the link with a health request (timeout 10 s: it succeeds on a slow link)
        "action_timeout_s": 1.0, "breaker_threshold": 1, "breaker_reset_s": 0.5,
        "reconnect_base_s": 0.1, "reconnect_max_s": 1.0, "health_interval_s": 30.0,
        "handlers": [{"type": "echo"},
                     {"type": "tests.support.bad_handlers:Raising", "trigger": "boom"},
                     {"type": "tests.bots.pubsub_handlers:Announce", "topic": "probe"}]}))
    wait_until(lambda: bot_running(fleet, "probe"), 60, step=0.3, what="bot probe running")

    # a burst from one user to one bot: 12 echoes to one chat (limiter waits, FLOOD_WAIT,
    # retries, queue drops), 4 handler errors, 12 events published
    for i in range(12):
        tg.send_as(alice["user_id"], probe["user_id"], f"burst {i}" + (" boom" if i % 3 == 0
                                                                       else ""))
    wanted = {"tgfleet_bot_handler_errors_total": {"bot": "probe"},
              "tgfleet_bot_queue_drops_total": {"bot": "probe"},
              "tgfleet_eventbus_published_total": {"topic": "probe"},
              "tgfleet_ratelimit_wait_seconds_count": {"bot": "probe"},
              "tgfleet_flood_waits_total": {},
              "tgfleet_flood_penalty_seconds_total": {},
              "tgfleet_retries_total": {}}

    def missing():
        s = scrape(port)
        return [name for name, labels in wanted.items() if metric(s, name, **labels) <= 0]
    wait_until(lambda: not missing(), 30, step=0.3, what="the burst visible in /metrics")

    # a slow Telegram for a moment: the probe's answer to bob times out (1 s), its breaker
    # opens, and the backend reconnects (its proving health request may take 10 s)
    bob = tg.create_account("user", username="bob")
    tg.set_limits(delay_ms=2500)
    try:
        tg.send_as(bob["user_id"], probe["user_id"], "are you there?")
        wait_until(lambda: metric(scrape(port), "tgfleet_backend_reconnects_total",
                                  bot="probe") > 0,
                   30, step=0.3, what="the probe's backend reconnected")
    finally:
        tg.set_limits(delay_ms=0)

    # a requested restart of one bot group
    ctl_ok(fleet, "restart", "demo4")
    wait_until(lambda: metric(scrape(port), "tgfleet_restarts_total",
                              actor="root/bots/demo4", reason="requested") > 0,
               10, step=0.2, what="the restart of demo4 in /metrics")
    tg.set_limits(chat_per_second=1.0, chat_burst=3)   # Telegram's usual limits again
    return tg


def test_every_dashboard_query_returns_data_from_a_running_fleet(tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the 'prometheus' binary (Debian package 'prometheus') is not installed; "
                    "CI installs it in .ci/run")
    exprs = [(title, grafana_to_promql(e)) for title, e in panel_exprs(load_dashboard())]
    assert len(exprs) >= 20

    t0 = time.monotonic()
    fleet = start_fleet(tmp_path, "inprocess", localtg=True, demo_bots=DEMO_BOTS,
                        wait_for=f"{DEMO_BOTS} of {DEMO_BOTS} bots running", timeout=90,
                        extra="flood_limits = true")
    prom = None
    try:
        prom = Prometheus(binary, tmp_path / "prometheus", fleet.ports["metrics"])
        make_trouble(fleet)

        def scraped_enough():
            res = prom.query('count_over_time(up{job="tgfleet"}[1m])')
            up = prom.query('up{job="tgfleet"}')
            return bool(res and up and float(res[0]["value"][1]) >= 4
                        and up[0]["value"][1] == "1")
        wait_until(scraped_enough, 30, step=0.5,
                   what=f"prometheus scraping the fleet (log: {prom.log_path})")

        # rate() and increase() need two scrapes of a series: poll, bounded
        pending = dict(enumerate(exprs))
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for i in list(pending):
                if prom.query(pending[i][1]):
                    del pending[i]
            if pending:
                time.sleep(1.0)
        assert not pending, "panel queries without data from a running fleet:\n" + "\n".join(
            f"  {title}: {expr}" for title, expr in pending.values())

        # the trouble made above is what the failure panels show (not only zero series)
        def total(expr):
            res = prom.query(expr)
            return sum(float(r["value"][1]) for r in res) if res else 0.0
        assert total("sum(tgfleet_flood_waits_total)") > 0
        # a scrape may lag the event by a scrape interval or two: poll, bounded
        wait_until(lambda: total('sum(tgfleet_restarts_total{reason="requested"})') >= 1, 15,
                   step=0.5, what="the requested restart in Prometheus")
        assert total('sum(tgfleet_bot_handler_errors_total{bot="probe"})') >= 1
        assert total('sum(tgfleet_backend_reconnects_total{bot="probe"})') >= 1
        # demo4's group may still be starting again at the last scrape
        wait_until(lambda: total('sum(tgfleet_actor_up{actor=~".+/bots/[^/]+/bot"})')
                   == DEMO_BOTS + 1, 15, step=0.5, what="every bot running in Prometheus")
    finally:
        if prom is not None:
            prom.stop()
        rc, left = stop_fleet(fleet)
    assert rc == 0, fleet.output()[-3000:]
    assert not left
    assert time.monotonic() - t0 < 120
