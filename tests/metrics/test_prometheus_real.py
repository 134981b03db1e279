"""Every Grafana panel query returns data from a real Prometheus scraping a running fleet.

Prometheus is Debian's `prometheus` package (CI installs it in `.ci/run`). When the binary is
missing, the session installs it only when running as root and `apt-get install -y prometheus`
works; otherwise the test is skipped with the reason.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from system.boot import free_port
from tests.metrics.stack import (PROMETHEUS_YML, grafana_to_promql, load_dashboard, panel_exprs,
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


def prometheus_config(exporter_port: int) -> str:
    """ops/prometheus.yml itself, pointed at the test's exporter and scraping every second."""
    text = PROMETHEUS_YML.read_text()
    assert text.count('"127.0.0.1:9464"') == 1
    text = text.replace('"127.0.0.1:9464"', f'"127.0.0.1:{exporter_port}"')
    text = text.replace("scrape_interval: 5s", "scrape_interval: 1s")
    text = text.replace("evaluation_interval: 5s", "evaluation_interval: 1s")
    return text.replace("scrape_timeout: 4s", "scrape_timeout: 1s")


class Prometheus:
    def __init__(self, binary: str, workdir: Path, exporter_port: int):
        self.port = free_port()
        cfg = workdir / "prometheus.yml"
        cfg.write_text(prometheus_config(exporter_port))
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list | None:
        """The result of an instant query; None while the server does not answer."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"query {expr!r} rejected: {exc.read().decode()}") from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        assert body["status"] == "success", body
        return body["data"]["result"]

    def log_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 9)
        self.proc.wait(10)
        self._log.close()


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
