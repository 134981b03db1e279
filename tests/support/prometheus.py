"""A real Prometheus server for tests: ops/prometheus.yml pointed at a test's metrics port,
scraping every second, queried over its HTTP API, killed by PID at the end. Shared by the
dashboard test against a test tree (tests/metrics) and against a running fleet (tests/e2e)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from system.boot import free_port
from tests.metrics.stack import PROMETHEUS_YML


def prometheus_config(metrics_port: int) -> str:
    """ops/prometheus.yml itself, pointed at the fleet's metrics port, scraping every second."""
    text = PROMETHEUS_YML.read_text()
    text, n = re.subn(r'"127\.0\.0\.1:\d+"', f'"127.0.0.1:{metrics_port}"', text)
    assert n == 1, "ops/prometheus.yml should have exactly one 127.0.0.1 target"
    text = re.sub(r"(scrape_interval|evaluation_interval):\s*\S+", r"\1: 1s", text)
    return re.sub(r"scrape_timeout:\s*\S+", "scrape_timeout: 1s", text)


class Prometheus:
    """A real Prometheus server in a subprocess, ended by PID."""

    def __init__(self, binary: str, workdir: Path, metrics_port: int):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cfg = workdir / "prometheus.yml"
        cfg.write_text(prometheus_config(metrics_port))
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list | None:
        """The result vector of an instant query; None while the server does not answer."""
        assert self.proc.poll() is None, f"prometheus exited:\n{self.log_tail()}"
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
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()
