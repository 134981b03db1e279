"""ops/ksm: status reads the host's ksmd; bad arguments are refused before anything is written.
(`on` and `off` change a host-wide setting, so the suite never runs them.)"""
import os
import subprocess

from system import memmerge
from tests.ops.conftest import REPO

KSM = str(REPO / "ops" / "ksm")


def run(*args):
    return subprocess.run([KSM, *args], capture_output=True, text=True, timeout=30)


def test_status_reports_the_hosts_ksmd():
    r = run("status")
    if not os.path.isdir(memmerge.KSM_DIR):
        assert r.returncode == 2 and "this kernel has no KSM" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    k = memmerge.ksmd()
    assert f"run={k['run']} pages_to_scan={k['pages_to_scan']}" in r.stdout
    assert "MiB saved in" in r.stdout


def test_bad_arguments_change_nothing():
    before = memmerge.ksmd()
    if not os.path.isdir(memmerge.KSM_DIR):
        assert "this kernel has no KSM" in run("on", "many").stderr
        return
    r = run("sometimes")
    assert r.returncode == 2 and "usage: ops/ksm" in r.stderr
    r = run("on", "many")
    assert r.returncode == 2
    assert ("PAGES must be a number, got 'many'" in r.stderr) or ("needs root" in r.stderr)
    assert memmerge.ksmd() == before
