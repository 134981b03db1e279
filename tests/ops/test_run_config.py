"""`run` with a configuration that can only be found wrong at start."""
import os
import subprocess
import sys

import psutil

from tests.ops.conftest import REPO, write_config


def test_run_refuses_cores_this_machine_lacks_and_leaves_nothing(tmp_path):
    """A core list the config parser accepts but this machine cannot give is found at start:
    a one-line config error, exit 2, and the local Telegram started before it is gone."""
    config, _ = write_config(tmp_path, "inprocess", localtg=True, demo_bots=0)
    missing = max(os.sched_getaffinity(0)) + 1
    env = dict(os.environ, TGFLEET_SYSTEM_CPU_AFFINITY=str(missing))
    r = subprocess.run([sys.executable, "-m", "system.cli", "run", "--config", str(config)],
                       cwd=str(REPO), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"config error: system.cpu_affinity: cores [{missing}] are not available" in r.stderr
    assert "Traceback" not in r.stderr
    left = [p for p in psutil.process_iter(["cmdline"])
            if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert not left, left
