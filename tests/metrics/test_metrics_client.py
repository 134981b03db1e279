"""Unit tests: the family registry, reason labels, MetricsBuffer and its reports."""
from __future__ import annotations

import os
import re

import pytest

from messages.lifecycle import StatusRow
from messages.metrics import MetricsReport
from system import metricdefs
from system.metricdefs import (COUNTER, EXPORTER, FAMILIES, GAUGE, HISTOGRAM, REASONS, Family,
                               reason_label)
from system.metrics_client import CPU_FAMILY, PSS_FAMILY, RSS_FAMILY, MetricsBuffer, tree_snapshot

REQUIRED = {
    "tgfleet_actors": (GAUGE, ("kind", "state")),
    "tgfleet_restarts_total": (COUNTER, ("actor", "reason")),
    "tgfleet_escalations_total": (COUNTER, ("actor",)),
    "tgfleet_bot_updates_total": (COUNTER, ("bot",)),
    "tgfleet_bot_actions_total": (COUNTER, ("bot", "action", "result")),
    "tgfleet_bot_handler_errors_total": (COUNTER, ("bot", "handler")),
    "tgfleet_bot_dedup_hits_total": (COUNTER, ("bot",)),
    "tgfleet_bot_queue_depth": (GAUGE, ("bot",)),
    "tgfleet_bot_queue_drops_total": (COUNTER, ("bot",)),
    "tgfleet_bot_last_update_age_seconds": (GAUGE, ("bot",)),
    "tgfleet_backend_connected": (GAUGE, ("bot", "library")),
    "tgfleet_backend_requests_in_flight": (GAUGE, ("bot",)),
    "tgfleet_backend_reconnects_total": (COUNTER, ("bot",)),
    "tgfleet_circuit_state": (GAUGE, ("bot",)),
    "tgfleet_retries_total": (COUNTER, ("bot",)),
    "tgfleet_ratelimit_grants_total": (COUNTER, ("bot",)),
    "tgfleet_ratelimit_wait_seconds": (HISTOGRAM, ("bot",)),
    "tgfleet_flood_waits_total": (COUNTER, ("bot",)),
    "tgfleet_flood_penalty_seconds_total": (COUNTER, ("bot",)),
    "tgfleet_store_write_seconds": (HISTOGRAM, ()),
    "tgfleet_store_rows": (GAUGE, ("table",)),
    "tgfleet_e2e_latency_seconds": (HISTOGRAM, ("bot",)),
    "tgfleet_process_resident_memory_bytes": (GAUGE, ("actor",)),
    "tgfleet_process_cpu_seconds_total": (COUNTER, ("actor",)),
    "tgfleet_fleet_resident_memory_bytes": (GAUGE, ()),
    "tgfleet_process_proportional_memory_bytes": (GAUGE, ("actor",)),
    "tgfleet_fleet_proportional_memory_bytes": (GAUGE, ()),
    "tgfleet_eventbus_published_total": (COUNTER, ("topic",)),
}


# ---- the registry -----------------------------------------------------------------------------

def test_contract_families_are_declared_with_their_types_and_labels():
    for name, (kind, labels) in REQUIRED.items():
        fam = metricdefs.family(name)
        assert (fam.type, fam.labels) == (kind, labels), name


def test_every_family_follows_prometheus_naming():
    name_re = re.compile(r"^tgfleet_[a-z][a-z0-9_]*$")
    for name, fam in FAMILIES.items():
        assert name_re.match(name), name
        assert fam.help and fam.help.endswith("."), name
        assert fam.name == name
        if fam.type == COUNTER:
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if fam.type == HISTOGRAM:
            assert name.endswith("_seconds"), name    # every histogram here measures time
            assert list(fam.buckets) == sorted(set(fam.buckets)) and fam.buckets[0] > 0
        for label in fam.labels:
            assert re.match(r"^[a-z][a-z0-9_]*$", label) and label not in ("le", "quantile")


def test_family_declaration_is_checked():
    with pytest.raises(ValueError):
        Family("tgfleet_x", COUNTER, "X.")                        # counter without _total
    with pytest.raises(ValueError):
        Family("tgfleet_x_total", GAUGE, "X.")                    # gauge with _total
    with pytest.raises(ValueError):
        Family("tgfleet_x_seconds", HISTOGRAM, "X.", buckets=(1.0, 0.5))
    with pytest.raises(ValueError):
        Family("tgfleet_x_seconds", HISTOGRAM, "X.", ("le",), buckets=(1.0,))
    with pytest.raises(ValueError):
        Family("tgfleet_x", "summary", "X.")
    with pytest.raises(ValueError):
        metricdefs.family("tgfleet_nope_total")


@pytest.mark.parametrize("text, label", [
    ("after 0.052s: RuntimeError: boom requested", "crash"),
    ("RuntimeError: boom requested", "crash"),
    ("process exited", "crash"),
    ("after 0.1s: exited during start", "crash"),
    ("after 0.021s: hung: missed 3 probes", "hung"),
    ("start timeout", "start_timeout"),
    ("after 1.0s: stop timeout", "stop_timeout"),
    ("requested", "requested"),
    ("after 0.02s: escalation: crasher failed 1 times within 5s (intensity 0): x", "escalation"),
    ("crasher failed 4 times within 5s (intensity 3): RuntimeError: x", "escalation"),
    ("", "other"),
    ("the moon is in the wrong phase", "other"),
])
def test_reason_label_maps_free_text_to_a_bounded_set(text, label):
    assert reason_label(text) == label
    assert label in REASONS


# ---- the buffer -------------------------------------------------------------------------------

def samples_of(report: MetricsReport) -> dict:
    return {(name, labels): value for name, labels, value in report.samples}


def test_counters_gauges_and_labels():
    buf = MetricsBuffer("root/bots/alpha/bot", process=False)
    buf.inc("tgfleet_bot_updates_total", bot="alpha")
    buf.inc("tgfleet_bot_updates_total", 2, bot="alpha")
    buf.inc("tgfleet_bot_updates_total", bot="beta")
    # keyword order does not matter: labels come out in the family's order, as strings
    buf.inc("tgfleet_bot_actions_total", result="ok", action="send_message", bot="alpha")
    buf.inc("tgfleet_bot_actions_total", bot="alpha", action="send_message", result="ok")
    buf.set("tgfleet_bot_queue_depth", 7, bot="alpha")
    buf.inc("tgfleet_bot_queue_depth", 2, bot="alpha")
    buf.dec("tgfleet_bot_queue_depth", 4, bot="alpha")
    buf.set("tgfleet_store_rows", 12, table=1)
    rep = buf.report()
    assert rep.source == "root/bots/alpha/bot" and rep.pid == os.getpid()
    s = samples_of(rep)
    assert s[("tgfleet_bot_updates_total", (("bot", "alpha"),))] == 3.0
    assert s[("tgfleet_bot_updates_total", (("bot", "beta"),))] == 1.0
    key = (("bot", "alpha"), ("action", "send_message"), ("result", "ok"))
    assert s[("tgfleet_bot_actions_total", key)] == 2.0
    assert s[("tgfleet_bot_queue_depth", (("bot", "alpha"),))] == 5.0
    assert s[("tgfleet_store_rows", (("table", "1"),))] == 12.0
    assert len(s) == 5                        # process=False: no process samples
    assert buf.get("tgfleet_bot_queue_depth", bot="alpha") == 5.0
    buf.remove("tgfleet_bot_queue_depth", bot="alpha")
    assert buf.get("tgfleet_bot_queue_depth", bot="alpha") is None


@pytest.mark.parametrize("call", [
    lambda b: b.inc("tgfleet_bot_updatez_total", bot="a"),                 # unknown family
    lambda b: b.inc("tgfleet_bot_updates_total"),                          # missing label
    lambda b: b.inc("tgfleet_bot_updates_total", bot="a", chat="1"),       # extra label
    lambda b: b.inc("tgfleet_bot_updates_total", robot="a"),               # wrong label name
    lambda b: b.inc("tgfleet_bot_updates_total", -1, bot="a"),             # counter going down
    lambda b: b.set("tgfleet_bot_updates_total", -1, bot="a"),
    lambda b: b.inc("tgfleet_e2e_latency_seconds", bot="a"),               # inc on a histogram
    lambda b: b.set("tgfleet_e2e_latency_seconds", 1, bot="a"),
    lambda b: b.observe("tgfleet_bot_updates_total", 1, bot="a"),          # observe on a counter
    lambda b: b.observe("tgfleet_e2e_latency_seconds", 0.1),               # missing label
    lambda b: b.observe("tgfleet_e2e_latency_seconds", float("nan"), bot="a"),
    lambda b: b.dec("tgfleet_bot_updates_total", bot="a"),                 # dec on a counter
    lambda b: b.inc("tgfleet_restarts_total", actor="x", reason="crash"),  # exporter's family
    lambda b: b.set("tgfleet_actors", 1, kind="bot", state="running"),
])
def test_programming_errors_raise_value_error(call):
    buf = MetricsBuffer("t", process=False)
    with pytest.raises(ValueError):
        call(buf)
    assert buf.report().samples == ()


def test_histogram_buckets_follow_le_semantics():
    fam = metricdefs.family("tgfleet_e2e_latency_seconds")
    buf = MetricsBuffer("t", process=False)
    values = [0.0, fam.buckets[0], fam.buckets[0] * 1.01, fam.buckets[3], fam.buckets[-1],
              fam.buckets[-1] + 1, 1e9]
    for v in values:
        buf.observe("tgfleet_e2e_latency_seconds", v, bot="alpha")
    counts, total, count = buf.get("tgfleet_e2e_latency_seconds", bot="alpha")
    assert len(counts) == len(fam.buckets) + 1
    assert count == len(values) == sum(counts)
    assert total == pytest.approx(sum(values))
    expected = [0] * (len(fam.buckets) + 1)
    expected[0] = 2                    # 0 and exactly the first bound (le is inclusive)
    expected[1] = 1                    # just above the first bound
    expected[3] = 1
    expected[len(fam.buckets) - 1] = 1  # exactly the last bound
    expected[-1] = 2                   # above every bound: the +Inf overflow slot
    assert list(counts) == expected
    rep = samples_of(buf.report())
    assert rep[("tgfleet_e2e_latency_seconds", (("bot", "alpha"),))] == (tuple(expected),
                                                                         total, count)


def test_histogram_without_labels_and_time_context():
    buf = MetricsBuffer("t", process=False)
    with buf.time("tgfleet_store_write_seconds"):
        pass
    counts, total, count = buf.get("tgfleet_store_write_seconds")
    assert count == 1 and sum(counts) == 1 and total >= 0.0


def test_report_adds_process_memory_and_cpu():
    buf = MetricsBuffer("root/store")
    buf.inc("tgfleet_bot_updates_total", bot="a")
    rep = buf.report()
    s = samples_of(rep)
    rss = s[(RSS_FAMILY, (("actor", "root/store"),))]
    cpu = s[(CPU_FAMILY, (("actor", "root/store"),))]
    pss = s[(PSS_FAMILY, (("actor", "root/store"),))]
    assert rss > 1_000_000        # a Python process is more than a megabyte
    assert 0 < pss <= rss         # its share of what it maps, shared pages divided
    assert cpu > 0.0
    assert rep.epoch == buf.epoch and rep.ts >= rep.epoch
    again = buf.report()
    assert again.epoch == rep.epoch       # same buffer, same epoch
    assert MetricsBuffer("root/store").epoch >= rep.epoch


def test_report_is_a_frozen_snapshot():
    buf = MetricsBuffer("t", process=False)
    buf.observe("tgfleet_e2e_latency_seconds", 0.01, bot="a")
    rep = buf.report()
    buf.observe("tgfleet_e2e_latency_seconds", 0.01, bot="a")
    (_, _, (counts, _, count)), = rep.samples
    assert count == 1 and sum(counts) == 1


def test_flush_sends_to_the_metrics_address():
    class FakeActor:
        def __init__(self, env):
            self.env, self.sent = env, []

        def send(self, addr, msg):
            self.sent.append((addr, msg))

    buf = MetricsBuffer("t", process=False)
    buf.inc("tgfleet_bot_updates_total", bot="a")
    with_metrics, without = FakeActor({"metrics": "exporter-address"}), FakeActor({})
    assert buf.flush(with_metrics) is True
    assert buf.flush(without) is False and without.sent == []
    (addr, msg), = with_metrics.sent
    assert addr == "exporter-address" and isinstance(msg, MetricsReport)


def test_tree_snapshot_helper():
    rows = (StatusRow("root/a", "worker", "running", 0, 1.0, "", 1),
            StatusRow("root/b", "worker", "exited", 1, 0.0, "boom", 0),
            StatusRow("root/c", "worker", "stopped", 0, 0.0, "", 0))
    snap = tree_snapshot(rows)
    assert not snap.ready and snap.not_ready == ("root/b", "root/c")
    only_a = tree_snapshot(rows, permanent_paths={"root/a"})
    assert only_a.ready and only_a.not_ready == ()
    assert tree_snapshot(rows[:1]).ready


def test_exporter_families_are_marked():
    for name in ("tgfleet_actors", "tgfleet_restarts_total", "tgfleet_escalations_total",
                 "tgfleet_fleet_resident_memory_bytes", "tgfleet_fleet_proportional_memory_bytes",
                 "tgfleet_ready"):
        assert FAMILIES[name].origin == EXPORTER


def test_pss_is_read_less_often_than_rss(monkeypatch):
    """PSS costs a walk of every page table (~1 ms for a backend): it is read once per
    PSS_SAMPLE_S, RSS and CPU once per PROCESS_SAMPLE_S, and a forked child never reports
    its parent's cached values."""
    import system.metrics_client as mc
    reads = []
    monkeypatch.setattr(mc, "proportional_memory", lambda: reads.append(1) or 123.0)
    monkeypatch.setattr(mc, "_process_sample", None)
    clock = [1000.0]
    monkeypatch.setattr(mc.time, "monotonic", lambda: clock[0])
    buf = MetricsBuffer("root/store")

    def pss():
        return dict(((f, l), v) for f, l, v in buf.process_samples())[
            (PSS_FAMILY, (("actor", "root/store"),))]
    assert pss() == 123.0 and len(reads) == 1
    clock[0] += mc.PROCESS_SAMPLE_S + 0.1          # RSS read again, PSS kept
    assert pss() == 123.0 and len(reads) == 1
    clock[0] += mc.PSS_SAMPLE_S
    assert pss() == 123.0 and len(reads) == 2
    pid, *rest = mc._process_sample
    monkeypatch.setattr(mc, "_process_sample", (pid + 1, *rest))   # as a forked child sees it
    assert pss() == 123.0 and len(reads) == 3


class PacedActor:
    """Stands in for a FleetActor (MetricsBuffer only calls `send` and `every` on it)."""

    def __init__(self):
        self.env, self.sent, self.timers = {"metrics": "exporter-address"}, [], []

    def send(self, addr, msg):
        self.sent.append(msg)

    def every(self, name, period):
        self.timers.append((name, period))


def test_report_timer_slows_down_while_nothing_changes_and_speeds_up_on_a_change():
    from system.metrics_client import REPORT_INTERVAL
    idle = MetricsBuffer.IDLE_REPORT_S
    assert idle > REPORT_INTERVAL
    actor, buf = PacedActor(), MetricsBuffer("t", process=False)
    buf.set("tgfleet_bot_last_update_age_seconds", 1.0, bot="a")
    buf.inc("tgfleet_bot_updates_total", 0, bot="a")                  # a new series
    buf.set("tgfleet_bot_queue_depth", 0, bot="a")
    buf.schedule(actor)
    assert actor.timers == [("metrics", REPORT_INTERVAL)]
    assert buf.tick(actor) is True and len(actor.sent) == 1           # the first report
    assert buf.tick(actor) is False and len(actor.sent) == 1          # nothing changed
    assert actor.timers[-1] == ("metrics", idle)                      # so: slower
    assert buf.tick(actor) is True and len(actor.sent) == 2           # an idle report
    assert actor.timers[-1] == ("metrics", idle)                      # still slow
    # not changes: an age (the exporter ages it), a counter incremented by 0, a gauge set again
    buf.set("tgfleet_bot_last_update_age_seconds", 9.0, bot="a")
    buf.inc("tgfleet_bot_updates_total", 0, bot="a")
    buf.inc("tgfleet_bot_updates_total", 0, bot="a")
    buf.set("tgfleet_bot_queue_depth", 0, bot="a")
    buf.set("tgfleet_bot_queue_depth", 0, bot="a")
    assert len(actor.timers) == 2
    buf.set("tgfleet_bot_queue_depth", 2, bot="a")                    # a change
    assert actor.timers[-1] == ("metrics", REPORT_INTERVAL) and len(actor.timers) == 3
    buf.observe("tgfleet_e2e_latency_seconds", 0.01, bot="a")
    assert len(actor.timers) == 3                                     # sped up once
    assert buf.tick(actor) is True
    rep = actor.sent[-1]
    values = {fam: v for fam, _, v in rep.samples}
    assert values["tgfleet_bot_queue_depth"] == 2.0
    assert values["tgfleet_bot_last_update_age_seconds"] == 9.0       # the age, as of now


def test_flush_sends_nothing_unchanged_until_the_idle_period():
    actor, buf = PacedActor(), MetricsBuffer("t", process=False)
    buf.inc("tgfleet_bot_updates_total", bot="a")
    assert buf.flush(actor) is True
    assert buf.flush(actor) is False
    buf._last_sent -= MetricsBuffer.IDLE_REPORT_S
    assert buf.flush(actor) is True                                   # RSS/CPU every idle period
    buf.remove("tgfleet_bot_updates_total", bot="a")
    assert buf.flush(actor) is True                                   # a removal is a change
