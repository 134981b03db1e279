"""The REAL libtdjson driven by TdlibSession, offline, in a loopback-only network namespace.

Why a subprocess under `unshare -n`: TDLib dials Telegram as soon as a client starts and this
machine must never let it. The test process itself never loads libtdjson; the script
`offline_tdlib_script.py` does, inside a fresh network namespace (only `lo`, no route), and
re-checks that before loading the library. If a namespace cannot be made (not root, no
unshare/ip) the test is skipped: there is no fallback to the host network.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "offline_tdlib_script.py")
TIMEOUT = 60


def namespace_unavailable() -> str:
    """Why a loopback-only namespace cannot be made here ('' if it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to create a network namespace (unshare -n)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install -y util-linux iproute2)"
    try:
        trial = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n failed: {exc}"
    if trial.returncode != 0:
        return f"unshare -n failed: rc={trial.returncode} {trial.stderr.strip()}"
    return ""


def run_offline_script() -> dict:
    # unshare and sh exec into python, so the PID we get is the one running TDLib.
    command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$1"',
               sys.executable, SCRIPT]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line; rc={proc.returncode}\nstdout:{stdout}\nstderr:{stderr}"
    result = json.loads(lines[-1][len("RESULT "):])
    result["_rc"], result["_stderr"] = proc.returncode, stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def offline():
    reason = namespace_unavailable()
    if reason:
        pytest.skip(f"real TDLib test skipped: {reason}")
    return run_offline_script()


def test_namespace_was_loopback_only(offline):
    assert offline["refused"] == "", offline["refused"]
    assert offline["_rc"] == 0, offline["_stderr"]


def test_reaches_wait_phone_number_with_databases_off(offline):
    states = offline["auth_states_before_close"]
    assert states[:2] == ["authorizationStateWaitTdlibParameters",
                          "authorizationStateWaitPhoneNumber"]
    assert "authorizationStateReady" not in states        # no server, no login
    assert offline["wait_phone_number_at_s"] < 5


def test_reports_connection_state_offline(offline):
    states = {state for _, state in offline["connection_states"]}
    assert states, "no updateConnectionState seen"
    assert states <= {"connectionStateConnecting", "connectionStateWaitingForNetwork"}


def test_probe_is_answered_locally(offline):
    probe = offline["probe"]
    assert probe and probe["@type"] == "optionValueString", probe
    assert probe["value"].startswith("1.")
    assert offline["probe_s"] < 1


def test_request_shapes_are_accepted_by_real_tdlib(offline):
    for name, err in offline["request_shapes"].items():
        assert err is not None, f"{name}: no answer"
        assert (err["code"], err["message"]) == (401, "Unauthorized"), (name, err)


def test_recycle_then_close_reach_closed(offline):
    assert offline["recycled"] is True
    assert offline["wait_phone_number_after_recycle_at_s"] is not None
    assert offline["closed"] is True
    assert offline["auth_states"][-1] == "authorizationStateClosed"
    assert offline["auth_states"].count("authorizationStateClosed") == 2   # recycle + close
    assert offline["thread_alive_before_close"] and not offline["thread_alive_after_close"]
    assert not [e for e in offline["errors"] if e.get("code") != 401], offline["errors"]


def test_report_memory_and_timings(offline):
    keys = ["load_s", "wait_phone_number_at_s", "first_connection_at_s", "probe_s",
            "recycle_s", "close_s", "rss_mb_before_load", "rss_mb_library_loaded",
            "rss_mb_one_client", "rss_mb_after_recycle", "rss_mb_after_close"]
    print("\nreal TDLib offline: " + ", ".join(f"{k}={offline[k]}" for k in keys))
    assert offline["rss_mb_one_client"] > 0
