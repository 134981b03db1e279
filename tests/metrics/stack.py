"""Helpers shared by the metrics tests: start an exporter and a small supervised tree of
emitting test actors, scrape the endpoint, read values out of parsed families."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from messages.lifecycle import ChildSpec, Start, Started
from messages.metrics import MetricsEndpoint

EMITTER = "tests.support.metrics_actors.Emitter"


def start_exporter(fs, tmp_path, **args):
    """Create a MetricsExporter on a free port the way a supervisor would; returns
    (address, MetricsEndpoint). Both of its answers (Started, MetricsEndpoint) are consumed."""
    addr = fs.create("actors.metrics.MetricsExporter")
    getattr(fs, "started", []).append(addr)
    args = dict({"port": 0, "endpoint_file": str(tmp_path / "metrics-endpoint.json")}, **args)
    seen = [fs.ask(addr, Start("metrics", args, {}, "root/metrics"), 15)]
    while not (any(isinstance(m, Started) for m in seen)
               and any(isinstance(m, MetricsEndpoint) for m in seen)):
        msg = fs.listen(10)
        assert msg is not None, f"the exporter did not answer Started and MetricsEndpoint: {seen}"
        seen.append(msg)
    endpoint = next(m for m in seen if isinstance(m, MetricsEndpoint))
    return addr, endpoint


def tree_args(tmp_path) -> dict:
    """root: bots/alpha/{backend,bot} (the bot crashes once), ratelimit, store, eventbus
    emitters, a supervisor with intensity 0 whose child crashes once (an escalation), and a
    plain Worker."""
    fast = {"base_s": 0.02, "max_s": 0.2}
    bot_group = ChildSpec("alpha", "actors.supervisor.BotGroup", kind="supervisor", args={
        "intensity": 10, "backoff": fast, "children": [
            ChildSpec("backend", EMITTER, {"role": "backend"}, kind="backend"),
            ChildSpec("bot", EMITTER, {"role": "bot",
                                       "crash_once_file": str(tmp_path / "bot-crashed"),
                                       "crash_after_ticks": 5}, kind="bot"),
        ]})
    return {
        "strategy": "one_for_one", "intensity": 10, "period": 5.0, "backoff": fast,
        "snapshot_period": 0.5,
        "children": [
            ChildSpec("bots", "actors.supervisor.Supervisor", kind="supervisor",
                      args={"intensity": 10, "backoff": fast, "children": [bot_group]}),
            ChildSpec("ratelimit", EMITTER, {"role": "ratelimit"}, kind="ratelimit"),
            ChildSpec("store", EMITTER, {"role": "store"}, kind="store"),
            ChildSpec("eventbus", EMITTER, {"role": "eventbus"}, kind="eventbus"),
            ChildSpec("flaky", "actors.supervisor.Supervisor", kind="supervisor", args={
                "intensity": 0, "backoff": fast, "children": [
                    ChildSpec("crasher", EMITTER, {
                        "role": "idle", "crash_once_file": str(tmp_path / "crasher-crashed"),
                        "crash_after_ticks": 3}),
                ]}),
            ChildSpec("worker", "tests.support.actors.Worker"),
        ],
    }


TREE_ROWS = 10   # bots, alpha, backend, bot, ratelimit, store, eventbus, flaky, crasher, worker


def start_tree(fs, exporter, tmp_path):
    root = fs.create("tests.support.metrics_actors.SnapshotRoot")
    getattr(fs, "started", []).append(root)
    reply = fs.ask(root, Start("root", tree_args(tmp_path), {"metrics": exporter}, "root"), 30)
    assert isinstance(reply, Started), f"the root did not start: {reply!r}"
    return root


def http_get(port: int, path: str, accept: str | None = None, method: str = "GET"):
    """(status, body text) of one request to 127.0.0.1:port."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict:
    """/metrics parsed with prometheus-client's own parser: family name -> Metric."""
    status, text = http_get(port, "/metrics")
    assert status == 200, text
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict, sample_name: str, default=None, **labels):
    """The value of the sample called `sample_name` with exactly these labels."""
    for fam in families.values():
        for s in fam.samples:
            if s.name == sample_name and s.labels == labels:
                return s.value
    return default


def read_endpoint_file(path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def run_for(fs, seconds: float) -> None:
    """Let the system run for `seconds`.
    In-process base: `InProcessRunner.pump` calls `listen(0)`, and simpleSystemBase only turns
    due timers into WakeupMessages inside a listen with time left (or a tell/ask), so timers
    would never fire while only pumping (a core runner bug, reported). A short positive
    `asys.listen` between pumps delivers them; the pump keeps serving bridge descriptors."""
    deadline = time.monotonic() + seconds
    if fs.runner is None:
        time.sleep(seconds)
        return
    while time.monotonic() < deadline:
        fs.asys.listen(0.005)
        fs.runner.pump(min(0.02, max(0.0, deadline - time.monotonic())))


def wait_until(fs, predicate, timeout: float, step: float = 0.2):
    """Run the system until `predicate()` returns a true value (returned) or `timeout` passes
    (then the last value, false, is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result
        run_for(fs, step)


# ---- ops files ------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "tgfleet.json"
PROMETHEUS_YML = ROOT / "ops" / "prometheus.yml"

# Grafana's variables, as a query on the dashboard would see them with "All" selected.
GRAFANA_VARS = {
    "${__rate_interval}": "1m", "$__rate_interval": "1m",
    "${__interval}": "5s", "$__interval": "5s",
    "${__range}": "1h", "$__range": "1h",
    "${bot}": ".*", "$bot": ".*",
}


def grafana_to_promql(expr: str) -> str:
    for var, val in GRAFANA_VARS.items():
        expr = expr.replace(var, val)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_exprs(dashboard) -> list[tuple[str, str]]:
    """(panel title, expr) of every query target of the dashboard, rows' panels included."""
    return [(p["title"], t["expr"]) for p in all_panels(dashboard["panels"])
            for t in p.get("targets", [])]
