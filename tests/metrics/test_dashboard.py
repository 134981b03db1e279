"""Static checks of ops/prometheus.yml and ops/grafana/tgfleet.json (the live check of every
panel query against a real Prometheus is test_prometheus_real.py)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from system.metricdefs import FAMILIES, HISTOGRAM
from tests.metrics.stack import (PROMETHEUS_YML, all_panels, grafana_to_promql, load_dashboard,
                                 panel_exprs)


def test_dashboard_is_a_grafana_dashboard():
    d = load_dashboard()
    assert d["uid"] == "tgfleet" and d["title"] and isinstance(d["schemaVersion"], int)
    panels = list(all_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "bot"} <= variables
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        targets = p["targets"]
        assert targets and all(t["expr"].strip() for t in targets), p["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]


def test_dashboard_has_the_required_sections():
    d = load_dashboard()
    rows = {p["title"] for p in all_panels(d["panels"]) if p["type"] == "row"}
    assert rows >= {"Fleet overview", "Per-bot traffic", "Latency", "Flood and rate limit",
                    "Restarts and escalations", "Memory and CPU"}
    exprs = " ".join(e for _, e in panel_exprs(d))
    for needle in ("tgfleet_actors", "tgfleet_ready", "tgfleet_actor_up",
                   "rate(tgfleet_bot_updates_total", "tgfleet_bot_actions_total",
                   "histogram_quantile(0.5, sum by (le, bot) (rate(tgfleet_e2e_latency_seconds",
                   "histogram_quantile(0.99, sum by (le, bot) (rate(tgfleet_e2e_latency_seconds",
                   "tgfleet_flood_waits_total", "tgfleet_flood_penalty_seconds_total",
                   "tgfleet_ratelimit_grants_total",
                   "histogram_quantile(0.99, sum by (le, bot) (rate(tgfleet_ratelimit_wait",
                   "tgfleet_restarts_total", "tgfleet_escalations_total",
                   "tgfleet_process_resident_memory_bytes", "tgfleet_fleet_resident_memory_bytes",
                   "tgfleet_fleet_proportional_memory_bytes",
                   "tgfleet_store_write_seconds_bucket"):
        assert needle in exprs, needle


def test_every_metric_in_the_dashboard_is_declared():
    suffixes = ("_bucket", "_sum", "_count")
    for title, expr in panel_exprs(load_dashboard()):
        for name in re.findall(r"\btgfleet_[a-z0-9_]+", expr):
            base = name
            if name not in FAMILIES:
                base = next((name[:-len(s)] for s in suffixes if name.endswith(s)), name)
                assert FAMILIES.get(base) is not None and FAMILIES[base].type == HISTOGRAM, \
                    f"panel {title!r}: {name} is not a declared family"
            assert base in FAMILIES, f"panel {title!r}: {name}"


def test_prometheus_config_scrapes_the_exporter():
    text = PROMETHEUS_YML.read_text()
    assert "job_name: tgfleet" in text
    assert '"127.0.0.1:9464"' in text
    assert re.search(r"scrape_interval:\s*5s", text)


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian package 'prometheus') is not installed")
def test_promtool_accepts_the_config_and_every_query(tmp_path):
    res = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_YML)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    # every panel query as a recording rule: promtool parses each PromQL expression
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(panel_exprs(load_dashboard())):
        lines.append(f"      - record: tgfleet:panel_{i}")
        lines.append(f"        expr: {json.dumps(grafana_to_promql(expr))}")
    rules = tmp_path / "rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    res = subprocess.run(["promtool", "check", "rules", str(rules)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
