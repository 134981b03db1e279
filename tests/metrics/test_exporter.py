"""The MetricsExporter: its state (unit), its HTTP routes (unit), and a real fleet on both bases
scraped over HTTP and parsed with prometheus-client's own parsers."""
from __future__ import annotations

import socket

import pytest
from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from actors.metrics import ExportState, HttpApp
from messages.lifecycle import (Crashed, LifecycleEvent, Probe, ProbeReply, Start, StatusRow,
                                Stop)
from messages.metrics import MetricsEndpoint, MetricsEndpointRequest, MetricsReport, TreeSnapshot
from system.metricdefs import FAMILIES, HISTOGRAM
from system.metrics_client import MetricsBuffer
from tests.metrics.stack import (TREE_ROWS, http_get, read_endpoint_file, scrape, start_exporter,
                                 start_tree, value, wait_until)

BOT = (("bot", "alpha"),)


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def report(source, samples, pid=1, epoch=1.0, ts=0.0):
    return MetricsReport(source, pid, tuple(samples), epoch, ts)


def counter(state, name, labels=BOT):
    return state.values()[name].get(labels)


# ---- ExportState ------------------------------------------------------------------------------

def test_counters_never_decrease_across_restarts():
    st = ExportState(clock=Clock())
    st.ingest(report("root/bot", [("tgfleet_bot_updates_total", BOT, 10.0)], epoch=1.0))
    st.ingest(report("root/bot", [("tgfleet_bot_updates_total", BOT, 15.0)], epoch=1.0))
    assert counter(st, "tgfleet_bot_updates_total") == 15.0
    # restarted actor (new epoch, same pid as on the in-process base): starts over at 2
    st.ingest(report("root/bot", [("tgfleet_bot_updates_total", BOT, 2.0)], epoch=2.0))
    assert counter(st, "tgfleet_bot_updates_total") == 17.0
    # restarted in a new process, and already counted more than before
    st.ingest(report("root/bot", [("tgfleet_bot_updates_total", BOT, 30.0)], pid=2, epoch=3.0))
    assert counter(st, "tgfleet_bot_updates_total") == 47.0
    # no epoch information, but the counter went down: also a restart
    st.ingest(report("root/bot", [("tgfleet_bot_updates_total", BOT, 1.0)], pid=2, epoch=3.0))
    assert counter(st, "tgfleet_bot_updates_total") == 48.0


def test_a_restarted_source_keeps_series_it_has_not_reported_yet():
    st = ExportState(clock=Clock())
    st.ingest(report("s", [("tgfleet_bot_dedup_hits_total", BOT, 4.0),
                           ("tgfleet_bot_queue_depth", BOT, 9.0)], epoch=1.0))
    st.ingest(report("s", [], epoch=2.0))
    vals = st.values()
    assert vals["tgfleet_bot_dedup_hits_total"][BOT] == 4.0     # counter kept
    assert BOT not in vals["tgfleet_bot_queue_depth"]           # gauge of the old life gone


def test_histograms_never_decrease_across_restarts():
    nb = len(FAMILIES["tgfleet_e2e_latency_seconds"].buckets) + 1
    one = tuple([1] + [0] * (nb - 1))
    st = ExportState(clock=Clock())
    st.ingest(report("b", [("tgfleet_e2e_latency_seconds", BOT, (one, 0.001, 1))], epoch=1.0))
    st.ingest(report("b", [("tgfleet_e2e_latency_seconds", BOT, (one, 0.002, 1))], epoch=2.0))
    cum, total, count = st.values()["tgfleet_e2e_latency_seconds"][BOT]
    assert count == 2 and total == pytest.approx(0.003)
    assert cum[0] == 2 and cum[-1] == 2 and list(cum) == sorted(cum)


def test_process_cpu_is_not_offset_when_only_the_actor_restarted():
    cpu = "tgfleet_process_cpu_seconds_total"
    lab = (("actor", "a"),)
    st = ExportState(clock=Clock())
    st.ingest(report("a", [(cpu, lab, 5.0)], pid=7, epoch=1.0))
    st.ingest(report("a", [(cpu, lab, 6.0)], pid=7, epoch=2.0))   # same process goes on
    assert st.values()[cpu][lab] == 6.0
    st.ingest(report("a", [(cpu, lab, 0.5)], pid=8, epoch=3.0))   # a new process
    assert st.values()[cpu][lab] == 6.5


def test_sources_are_summed_and_gauges_merged_per_family():
    st = ExportState(clock=Clock())
    lib = (("bot", "alpha"), ("library", "telethon"))
    st.ingest(report("x", [("tgfleet_bot_updates_total", BOT, 2.0),
                           ("tgfleet_bot_queue_depth", BOT, 3.0),
                           ("tgfleet_backend_connected", lib, 0.0)]))
    st.ingest(report("y", [("tgfleet_bot_updates_total", BOT, 5.0),
                           ("tgfleet_bot_queue_depth", BOT, 4.0),
                           ("tgfleet_backend_connected", lib, 1.0)]))
    vals = st.values()
    assert vals["tgfleet_bot_updates_total"][BOT] == 7.0
    assert vals["tgfleet_bot_queue_depth"][BOT] == 7.0          # merge=sum
    assert vals["tgfleet_backend_connected"][lib] == 1.0        # merge=max


def test_invalid_samples_are_counted_not_fatal():
    st = ExportState(clock=Clock())
    bad = [("tgfleet_nope_total", (), 1.0),                           # unknown family
           ("tgfleet_bot_updates_total", (("robot", "a"),), 1.0),     # wrong label name
           ("tgfleet_bot_updates_total", BOT, "many"),                # not a number
           ("tgfleet_restarts_total", (("actor", "x"), ("reason", "crash")), 1.0),  # exporter's
           ("tgfleet_e2e_latency_seconds", BOT, ((1, 2), 0.1, 3)),    # wrong bucket count
           ("just", "two"),
           ("tgfleet_bot_updates_total", (("bot", "ok"),), 1.0)]
    assert st.ingest(report("s", bad)) == 6
    vals = st.values()
    assert vals["tgfleet_metrics_invalid_samples_total"][()] == 6.0
    assert vals["tgfleet_bot_updates_total"] == {(("bot", "ok"),): 1.0}
    # labels in another order are accepted and put in the family's order
    st.ingest(report("t", [("tgfleet_bot_actions_total",
                            (("result", "ok"), ("bot", "b"), ("action", "send_message")), 1.0)]))
    key = (("bot", "b"), ("action", "send_message"), ("result", "ok"))
    assert st.values()["tgfleet_bot_actions_total"][key] == 1.0


def test_stale_sources_are_dropped_and_shared_counters_keep_their_count():
    clock = Clock()
    st = ExportState(stale_after=300.0, clock=clock)
    st.ingest(report("old", [("tgfleet_bot_updates_total", BOT, 4.0),
                             ("tgfleet_bot_queue_depth", BOT, 1.0),
                             ("tgfleet_bot_dedup_hits_total", BOT, 2.0)]))
    clock.t += 200
    st.ingest(report("live", [("tgfleet_bot_updates_total", BOT, 1.0)]))
    assert st.sweep() == 0
    clock.t += 150
    assert st.sweep() == 1                     # "old" silent for 350 s
    vals = st.values()
    assert vals["tgfleet_bot_updates_total"][BOT] == 5.0        # still reported by "live"
    assert BOT not in vals["tgfleet_bot_dedup_hits_total"]      # nobody reports it any more
    assert BOT not in vals["tgfleet_bot_queue_depth"]
    assert vals["tgfleet_metrics_sources"][()] == 1.0
    assert vals["tgfleet_metrics_sources_dropped_total"][()] == 1.0
    clock.t += 400
    assert st.sweep() == 1
    assert st.values()["tgfleet_bot_updates_total"] == {}


def test_fleet_memory_counts_each_process_once():
    st = ExportState(clock=Clock())
    rss = "tgfleet_process_resident_memory_bytes"
    pss = "tgfleet_process_proportional_memory_bytes"
    for name, pid, val in (("a", 10, 100.0), ("b", 10, 100.0), ("c", 11, 50.0)):
        st.ingest(report(name, [(rss, (("actor", name),), val),
                                (pss, (("actor", name),), val / 4)], pid=pid))
    vals = st.values()
    assert vals["tgfleet_fleet_resident_memory_bytes"][()] == 150.0
    assert vals["tgfleet_fleet_proportional_memory_bytes"][()] == 37.5
    assert vals["tgfleet_fleet_processes"][()] == 2.0
    assert len(vals[rss]) == 3


def test_fleet_memory_tells_processes_of_different_hosts_apart():
    """Several hosts (README "Several hosts"): the same pid on two machines is two processes,
    and memory is also shown per host."""
    st = ExportState(clock=Clock())
    rss = "tgfleet_process_resident_memory_bytes"
    for name, pid, system, host, val in (("a", 10, "m1/19500", "", 100.0),
                                         ("b", 10, "m1/19500", "", 100.0),
                                         ("c", 10, "m2/19600", "b", 70.0),
                                         ("d", 12, "m2/19600", "b", 30.0)):
        st.ingest(MetricsReport(name, pid, ((rss, (("actor", name),), val),), 1.0, 0.0,
                                system, host))
    vals = st.values()
    assert vals["tgfleet_fleet_resident_memory_bytes"][()] == 200.0
    assert vals["tgfleet_fleet_processes"][()] == 3.0
    assert vals["tgfleet_host_resident_memory_bytes"] == {(("host", "(leader)"),): 100.0,
                                                          (("host", "b"),): 100.0}


def test_lifecycle_events_count_restarts_escalations_and_states():
    clock = Clock()
    st = ExportState(clock=clock)
    st.ingest(report("root/bots/alpha/bot", [("tgfleet_bot_queue_depth", BOT, 3.0),
                                             ("tgfleet_bot_updates_total", BOT, 3.0)], ts=5.0))
    for ev in (LifecycleEvent(1.0, "root/bots", "start"),
               LifecycleEvent(2.0, "root/bots/alpha/bot", "started"),
               LifecycleEvent(10.0, "root/bots/alpha/bot", "crash", "RuntimeError: x"),
               LifecycleEvent(10.0, "root/bots/alpha/bot", "restart",
                              "after 0.05s: RuntimeError: x"),
               LifecycleEvent(11.0, "root/bots/alpha/bot", "restart", "requested"),
               LifecycleEvent(12.0, "root/bots", "escalation", "bot failed 4 times (intensity 3)")):
        st.lifecycle(ev)
    vals = st.values()
    bot = "root/bots/alpha/bot"
    assert vals["tgfleet_restarts_total"][(("actor", bot), ("reason", "crash"))] == 1.0
    assert vals["tgfleet_restarts_total"][(("actor", bot), ("reason", "requested"))] == 1.0
    assert vals["tgfleet_crashes_total"][(("actor", bot), ("reason", "crash"))] == 1.0
    assert vals["tgfleet_escalations_total"][(("actor", "root/bots"),)] == 1.0
    assert vals["tgfleet_actor_up"][(("actor", bot),)] == 0.0
    assert vals["tgfleet_actor_up"][(("actor", "root/bots"),)] == 0.0
    assert vals["tgfleet_lifecycle_events_total"][(("event", "restart"),)] == 2.0
    # the crash took the bot's gauges (reported before it) but not its counters
    assert BOT not in vals["tgfleet_bot_queue_depth"]
    assert vals["tgfleet_bot_updates_total"][BOT] == 3.0
    st.lifecycle(LifecycleEvent(20.0, bot, "started"))
    assert st.values()["tgfleet_actor_up"][(("actor", bot),)] == 1.0


def test_tree_snapshot_gives_actors_by_kind_and_state_and_readiness():
    clock = Clock()
    st = ExportState(snapshot_timeout=10.0, clock=clock)
    assert st.readiness() == (False, ["no tree snapshot received yet"])
    rows = (StatusRow("root/store", "store", "running", 0, 5.0, "", 11),
            StatusRow("root/bots/alpha/bot", "bot", "exited", 2, 0.0, "boom", 0),
            StatusRow("root/bots/beta/bot", "bot", "running", 0, 5.0, "", 12))
    st.tree(TreeSnapshot(rows, False, ("root/bots/alpha/bot",)))
    ready, why = st.readiness()
    assert not ready and why == ["root/bots/alpha/bot exited"]
    vals = st.values()
    assert vals["tgfleet_actors"][(("kind", "bot"), ("state", "running"))] == 1.0
    assert vals["tgfleet_actors"][(("kind", "bot"), ("state", "exited"))] == 1.0
    assert vals["tgfleet_actors"][(("kind", "store"), ("state", "failed"))] == 0.0
    assert vals["tgfleet_ready"][()] == 0.0
    st.tree(TreeSnapshot(rows[:1] + rows[2:], True))
    assert st.readiness() == (True, [])
    assert st.values()["tgfleet_ready"][()] == 1.0
    clock.t += 11                                  # the root stopped pushing snapshots
    ready, why = st.readiness()
    assert not ready and "old" in why[0]


def test_last_update_age_grows_between_reports():
    clock = Clock()
    st = ExportState(clock=clock)
    st.ingest(report("b", [("tgfleet_bot_last_update_age_seconds", BOT, 2.0)]))
    clock.t += 3.0
    assert st.values()["tgfleet_bot_last_update_age_seconds"][BOT] == pytest.approx(5.0)


def test_series_per_family_are_capped():
    st = ExportState(max_series=3, clock=Clock())
    st.ingest(report("s", [("tgfleet_bot_updates_total", (("bot", f"b{i}"),), 1.0)
                           for i in range(5)]))
    vals = st.values()
    assert len(vals["tgfleet_bot_updates_total"]) == 3
    assert vals["tgfleet_metrics_series_over_limit"][
        (("family", "tgfleet_bot_updates_total"),)] == 2.0


def test_an_older_report_does_not_replace_a_newer_one():
    st = ExportState(clock=Clock())
    st.ingest(report("s", [("tgfleet_bot_updates_total", BOT, 9.0)], ts=20.0))
    st.ingest(report("s", [("tgfleet_bot_updates_total", BOT, 5.0)], ts=10.0))
    assert counter(st, "tgfleet_bot_updates_total") == 9.0


# ---- HTTP routes ------------------------------------------------------------------------------

def test_http_routes():
    st = ExportState(clock=Clock())
    buf = MetricsBuffer("root/bots/alpha/bot")
    buf.inc("tgfleet_bot_updates_total", 4, bot="alpha")
    buf.observe("tgfleet_e2e_latency_seconds", 0.02, bot="alpha")
    st.ingest(buf.report())
    app = HttpApp(st)
    assert app.route("GET", "/healthz", {})[:2] == (200, "text/plain; charset=utf-8")
    assert app.route("GET", "/healthz", {})[2] == b"ok\n"
    assert app.route("GET", "/readyz", {})[0] == 503
    assert app.route("POST", "/metrics", {})[0] == 405
    assert app.route("GET", "/nope", {})[0] == 404
    status, ctype, body = app.route("GET", "/metrics", {})
    assert status == 200 and ctype.startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert value(fams, "tgfleet_bot_updates_total", bot="alpha") == 4.0
    assert value(fams, "tgfleet_e2e_latency_seconds_count", bot="alpha") == 1.0
    # every declared family is described, even before it has samples
    assert {f.name for f in fams.values()} >= {
        n[:-len("_total")] if FAMILIES[n].type == "counter" else n for n in FAMILIES}
    status, ctype, body = app.route(
        "GET", "/metrics", {"accept": "application/openmetrics-text; version=1.0.0"})
    assert ctype.startswith("application/openmetrics-text")
    om = {f.name: f for f in openmetrics_families(body.decode())}
    assert value(om, "tgfleet_bot_updates_total", bot="alpha") == 4.0
    st.tree(TreeSnapshot((), True))
    assert app.route("GET", "/readyz", {})[:3:2] == (200, b"ready\n")


# ---- a real fleet on both bases ---------------------------------------------------------------

REQUIRED_SAMPLES = [
    ("tgfleet_actors", {"kind": "bot", "state": "running"}),
    ("tgfleet_actor_up", {"actor": "root/bots/alpha/bot"}),
    ("tgfleet_ready", {}),
    ("tgfleet_restarts_total", {"actor": "root/bots/alpha/bot", "reason": "crash"}),
    ("tgfleet_escalations_total", {"actor": "root/flaky"}),
    ("tgfleet_bot_updates_total", {"bot": "alpha"}),
    ("tgfleet_bot_actions_total", {"bot": "alpha", "action": "send_message", "result": "ok"}),
    ("tgfleet_bot_handler_errors_total", {"bot": "alpha", "handler": "echo"}),
    ("tgfleet_bot_dedup_hits_total", {"bot": "alpha"}),
    ("tgfleet_bot_queue_depth", {"bot": "alpha"}),
    ("tgfleet_bot_queue_drops_total", {"bot": "alpha"}),
    ("tgfleet_bot_last_update_age_seconds", {"bot": "alpha"}),
    ("tgfleet_backend_connected", {"bot": "alpha", "library": "telethon"}),
    ("tgfleet_backend_requests_in_flight", {"bot": "alpha"}),
    ("tgfleet_backend_reconnects_total", {"bot": "alpha"}),
    ("tgfleet_circuit_state", {"bot": "alpha"}),
    ("tgfleet_retries_total", {"bot": "alpha"}),
    ("tgfleet_ratelimit_grants_total", {"bot": "alpha"}),
    ("tgfleet_ratelimit_wait_seconds_count", {"bot": "alpha"}),
    ("tgfleet_flood_waits_total", {"bot": "alpha"}),
    ("tgfleet_flood_penalty_seconds_total", {"bot": "alpha"}),
    ("tgfleet_store_write_seconds_count", {}),
    ("tgfleet_store_rows", {"table": "dedup"}),
    ("tgfleet_e2e_latency_seconds_count", {"bot": "alpha"}),
    ("tgfleet_process_resident_memory_bytes", {"actor": "root/bots/alpha/bot"}),
    ("tgfleet_process_cpu_seconds_total", {"actor": "root/bots/alpha/bot"}),
    ("tgfleet_fleet_resident_memory_bytes", {}),
    ("tgfleet_fleet_proportional_memory_bytes", {}),
    ("tgfleet_process_proportional_memory_bytes", {"actor": "root/bots/alpha/bot"}),
    ("tgfleet_host_resident_memory_bytes", {"host": "(leader)"}),
    ("tgfleet_eventbus_published_total", {"topic": "news"}),
]


def check_histogram(fams, name, **labels):
    buckets = [(s.labels["le"], s.value) for s in fams[name].samples
               if s.name == name + "_bucket"
               and {k: v for k, v in s.labels.items() if k != "le"} == labels]
    assert buckets and buckets[-1][0] == "+Inf", name
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"{name}: buckets are not cumulative: {buckets}"
    count = value(fams, name + "_count", **labels)
    assert counts[-1] == count > 0
    assert value(fams, name + "_sum", **labels) > 0


def test_fleet_metrics_end_to_end(fleet, tmp_path):
    exporter, endpoint = start_exporter(fleet, tmp_path)
    port = endpoint.port
    assert endpoint.host == "127.0.0.1" and port > 0
    assert read_endpoint_file(tmp_path / "metrics-endpoint.json")["port"] == port
    assert fleet.ask(exporter, MetricsEndpointRequest(), 5,
                     expect=MetricsEndpoint) == endpoint
    assert http_get(port, "/healthz") == (200, "ok\n")
    status, body = http_get(port, "/readyz")
    assert status == 503 and "no tree snapshot" in body

    start_tree(fleet, exporter, tmp_path)
    history = []          # tgfleet_bot_updates_total{bot="alpha"} at every scrape

    def settled():
        fams = scrape(port)
        updates = value(fams, "tgfleet_bot_updates_total", bot="alpha")
        if updates is not None:
            history.append(updates)
        restarts = value(fams, "tgfleet_restarts_total", 0,
                         actor="root/bots/alpha/bot", reason="crash")
        escalated = value(fams, "tgfleet_restarts_total", 0,
                          actor="root/flaky", reason="escalation")
        ok = (restarts >= 1 and escalated >= 1 and value(fams, "tgfleet_ready") == 1.0
              and (updates or 0) > 15   # more than the crashed life counted (5 ticks x 3)
              and all(value(fams, n, **lab) is not None for n, lab in REQUIRED_SAMPLES))
        return fams if ok else None

    fams = wait_until(fleet, settled, 40)
    assert fams, (f"the fleet's metrics did not settle; last scrape:\n"
                  f"{http_get(port, '/metrics')[1]}")
    missing = [(n, lab) for n, lab in REQUIRED_SAMPLES if value(fams, n, **lab) is None]
    assert not missing

    # restarts, escalations (a counter initialised at 0 for every supervisor), readiness
    assert value(fams, "tgfleet_escalations_total", actor="root/flaky") >= 1
    assert value(fams, "tgfleet_escalations_total", actor="root/bots") == 0
    assert value(fams, "tgfleet_crashes_total", actor="root/flaky/crasher", reason="crash") >= 1
    assert value(fams, "tgfleet_actor_up", actor="root/bots/alpha/bot") == 1.0
    running = sum(s.value for s in fams["tgfleet_actors"].samples
                  if s.labels["state"] == "running")
    assert running == TREE_ROWS
    assert http_get(port, "/readyz") == (200, "ready\n")

    # counters never went down, although the bot restarted while we were scraping
    assert history == sorted(history), history

    # traffic: sensible, consistent values
    assert value(fams, "tgfleet_bot_actions_total", bot="alpha", action="send_message",
                 result="ok") > 0
    waits = value(fams, "tgfleet_flood_waits_total", bot="alpha")
    assert waits >= 1
    assert value(fams, "tgfleet_flood_penalty_seconds_total", bot="alpha") == 3 * waits
    assert value(fams, "tgfleet_store_rows", table="dedup") == 100
    assert value(fams, "tgfleet_backend_connected", bot="alpha", library="telethon") == 1
    assert 0 <= value(fams, "tgfleet_bot_last_update_age_seconds", bot="alpha") < 60
    for name, labels in (("tgfleet_e2e_latency_seconds", {"bot": "alpha"}),
                         ("tgfleet_ratelimit_wait_seconds", {"bot": "alpha"}),
                         ("tgfleet_store_write_seconds", {})):
        check_histogram(fams, name, **labels)

    # processes: every reporting actor has RSS; the fleet total counts each process once
    rss = {s.labels["actor"]: s.value for s in fams["tgfleet_process_resident_memory_bytes"]
           .samples}
    assert {"root/metrics", "root/store", "root/bots/alpha/bot"} <= set(rss)
    assert min(rss.values()) > 1_000_000
    fleet_rss = value(fams, "tgfleet_fleet_resident_memory_bytes")
    processes = value(fams, "tgfleet_fleet_processes")
    if fleet.base == "inprocess":
        assert processes == 1 and fleet_rss < 2 * max(rss.values())
    else:
        assert processes == len(rss) and fleet_rss > max(rss.values())
    # PSS: each process's share; the fleet's sum is below its RSS sum (shared pages counted once)
    fleet_pss = value(fams, "tgfleet_fleet_proportional_memory_bytes")
    assert 0 < fleet_pss <= fleet_rss
    if fleet.base == "processes":
        assert fleet_pss < 0.8 * fleet_rss, (fleet_pss, fleet_rss)

    # OpenMetrics, as Prometheus asks for it, carries the same families
    status, text = http_get(port, "/metrics",
                            accept="application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert status == 200
    om = {f.name: f for f in openmetrics_families(text)}
    assert value(om, "tgfleet_bot_updates_total", bot="alpha") >= history[-1]


def test_readyz_follows_tree_snapshots(fleet, tmp_path):
    exporter, endpoint = start_exporter(fleet, tmp_path)
    port = endpoint.port
    rows = (StatusRow("root/store", "store", "running", 0, 1.0, "", 1),
            StatusRow("root/bots/alpha/bot", "bot", "exited", 1, 0.0, "boom", 0))
    fleet.tell(exporter, TreeSnapshot(rows, False, ("root/bots/alpha/bot",)))
    got = wait_until(fleet, lambda: (lambda r: r if r[0] == 503 and "alpha" in r[1] else None)(
        http_get(port, "/readyz")), 10)
    assert got and "root/bots/alpha/bot exited" in got[1]
    fleet.tell(exporter, TreeSnapshot(rows[:1], True))
    assert wait_until(fleet, lambda: http_get(port, "/readyz") == (200, "ready\n"), 10)
    fams = scrape(port)
    assert value(fams, "tgfleet_ready") == 1.0
    assert value(fams, "tgfleet_actors", kind="store", state="running") == 1.0
    assert http_get(port, "/healthz") == (200, "ok\n")
    assert http_get(port, "/nope")[0] == 404
    assert http_get(port, "/metrics", method="POST")[0] == 405


def test_a_busy_port_fails_the_start(fleet, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        exporter = fleet.create("actors.metrics.MetricsExporter")
        fleet.started.append(exporter)
        reply = fleet.ask(exporter, Start("metrics", {"port": port}, {}, "root/metrics"), 10,
                          expect=Crashed)
        assert isinstance(reply, Crashed), reply
        assert "Address already in use" in reply.error


def test_histogram_families_render_every_bucket():
    st = ExportState(clock=Clock())
    buf = MetricsBuffer("s", process=False)
    buf.observe("tgfleet_store_write_seconds", 0.003)
    st.ingest(buf.report())
    fams = {f.name: f for f in text_string_to_metric_families(
        HttpApp(st).route("GET", "/metrics", {})[2].decode())}
    for name, fam in FAMILIES.items():
        if fam.type == HISTOGRAM and name == "tgfleet_store_write_seconds":
            les = [s.labels["le"] for s in fams[name].samples if s.name.endswith("_bucket")]
            assert len(les) == len(fam.buckets) + 1 and les[-1] == "+Inf"


def test_stop_closes_the_port_and_removes_the_endpoint_file(fleet, tmp_path):
    exporter, endpoint = start_exporter(fleet, tmp_path)
    endpoint_file = tmp_path / "metrics-endpoint.json"
    assert endpoint_file.exists()
    assert http_get(endpoint.port, "/healthz")[0] == 200
    # a probe is answered through the HTTP thread's loop, so a hung server shows as a miss
    reply = fleet.ask(exporter, Probe(7), 5, expect=ProbeReply)
    assert reply is not None and reply.seq == 7 and reply.healthy
    fleet.tell(exporter, Stop("test"))

    def closed():
        try:
            socket.create_connection(("127.0.0.1", endpoint.port), timeout=0.5).close()
            return False
        except OSError:
            return True

    assert wait_until(fleet, closed, 10), "the exporter still listens after Stop"
    assert wait_until(fleet, lambda: not endpoint_file.exists(), 10)
