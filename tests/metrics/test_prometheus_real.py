"""Every Grafana panel query returns data from a real Prometheus scraping a running fleet.

Prometheus is Debian's `prometheus` package (CI installs it in `.ci/run`). When the binary is
missing, the session installs it only when running as root and `apt-get install -y prometheus`
works; otherwise the test is skipped with the reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.prometheus import Prometheus
from tests.metrics.stack import (grafana_to_promql, load_dashboard, panel_exprs,
                                 start_exporter, start_tree, wait_until)

@pytest.fixture(scope="session")
def prometheus_binary():
    path = shutil.which("prometheus")
    if path:
        return path
    if os.geteuid() != 0:
        pytest.skip("the 'prometheus' binary is missing and we are not root to "
                    "`apt-get install -y prometheus` (CI installs it in .ci/run)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                              "prometheus"], capture_output=True, text=True, timeout=600,
                             env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the 'prometheus' binary is missing and apt-get failed: {exc}")
    path = shutil.which("prometheus")
    if res.returncode != 0 or not path:
        pytest.skip("the 'prometheus' binary is missing and `apt-get install -y prometheus` "
                    f"failed (exit {res.returncode}): {res.stderr.strip()[-500:]}")
    return path




def test_every_dashboard_query_returns_data(fleet, tmp_path, prometheus_binary):
    exprs = [(title, grafana_to_promql(e)) for title, e in panel_exprs(load_dashboard())]
    assert len(exprs) >= 20
    exporter, endpoint = start_exporter(fleet, tmp_path)
    start_tree(fleet, exporter, tmp_path)
    prom = Prometheus(prometheus_binary, tmp_path, endpoint.port)
    try:
        def scraped_enough():
            assert prom.proc.poll() is None, f"prometheus exited:\n{prom.log_tail()}"
            res = prom.query('count_over_time(up{job="tgfleet"}[1m])')
            up = prom.query('up{job="tgfleet"}')
            return bool(res and up and float(res[0]["value"][1]) >= 4
                        and up[0]["value"][1] == "1")

        assert wait_until(fleet, scraped_enough, 45, step=0.5), \
            f"prometheus did not scrape the exporter:\n{prom.log_tail()}"

        pending = dict(enumerate(exprs))

        def all_answered():
            for i in list(pending):
                if prom.query(pending[i][1]):
                    del pending[i]
            return not pending

        # bounded poll: a query over rate() needs a couple of scrapes of fresh traffic
        wait_until(fleet, all_answered, 30, step=0.5)
        assert not pending, "panel queries without data:\n" + "\n".join(
            f"  {title}: {expr}" for title, expr in pending.values())
    finally:
        prom.stop()
