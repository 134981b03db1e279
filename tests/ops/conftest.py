"""A real fleet in a subprocess (`python -m system.cli run --config ...`), ended by PID."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from system.admin_client import AdminClient, read_token
from system.boot import free_port, port_open

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path, base, localtg=False, demo_bots=0, extra="", process_unit=None):
    ports = {k: free_port() for k in ("admin", "control", "metrics")}
    unit = f'process_unit = "{process_unit}"' if process_unit else ""
    cfg = f"""
[system]
base = "{base}"
{unit}
admin_port = {ports['admin']}
data_dir = "{tmp_path / 'var'}"
shutdown_timeout_s = 20.0

[control]
port = {ports['control']}

[metrics]
port = {ports['metrics']}

[supervision]
probe_interval_s = 1.0
probe_misses = 5

[localtg]
enabled = {str(localtg).lower()}
demo_bots = {demo_bots}
crowd_users = 5
crowd_rate = 5.0
{extra}
"""
    path = tmp_path / "tgfleet.toml"
    path.write_text(cfg)
    return path, ports


class Fleet:
    def __init__(self, proc, config, ports, tmp_path):
        self.proc, self.config, self.ports, self.tmp_path = proc, config, ports, tmp_path
        self.log = tmp_path / "run.log"

    def ctl(self, *args, input=None, env=None):
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run([str(REPO / "ops" / "ctl"), "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=60, input=input,
                              env=full_env, cwd=str(REPO))

    def ctl_json(self, *args):
        r = self.ctl("--json", *args)
        return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None, r.stderr

    def client(self):
        token = read_token(str(self.tmp_path / "var" / "admin.token"))
        return AdminClient("127.0.0.1", self.ports["control"], token)

    def output(self):
        return self.log.read_text() if self.log.exists() else ""


def start_fleet(tmp_path, base, wait_for="bots running", timeout=90, **cfg):
    config, ports = write_config(tmp_path, base, **cfg)
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "system.cli", "run", "--config", str(config)],
                            cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    fleet = Fleet(proc, config, ports, tmp_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"fleet exited early ({proc.returncode}):\n{fleet.output()}")
        if wait_for in fleet.output() and port_open("127.0.0.1", ports["control"]):
            return fleet
        time.sleep(0.1)
    stop_fleet(fleet)
    raise AssertionError(f"fleet not up within {timeout}s:\n{fleet.output()}")


def stop_fleet(fleet, sig=signal.SIGTERM, grace=30):
    """SIGTERM the launcher by PID; then make sure nothing of its session is left."""
    proc = fleet.proc
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    left = []
    for _ in range(50):
        left = fleet_processes(fleet)
        if not left:
            break
        time.sleep(0.1)
    for p in left:
        p.kill()
    return proc.returncode, left


def fleet_processes(fleet) -> list:
    """Every live process of this fleet. thespian's admin daemonizes (setsid, double fork), so
    its processes are not in the launcher's session; they are forks of the launcher and keep
    its exact command line (which names this test's own config file)."""
    mine = [sys.executable, "-m", "system.cli", "run", "--config", str(fleet.config)]
    out = []
    for p in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if p.info["cmdline"] == mine and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.NoSuchProcess, PermissionError):
            continue
    return out


@pytest.fixture(params=["inprocess", "processes"])
def base(request):
    return request.param
