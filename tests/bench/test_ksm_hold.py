"""bench/ksm.py: the benchmark's hold on the host's ksmd. It must say what it used, settle a
fleet at the fast rate, and put every value back; "host" and "off" must write nothing.

The host's real /sys/kernel/mm/ksm is never written here (a test must not change a host-wide
setting): a directory of the same files stands in for it (STAND-IN, named as such)."""
import threading
import time

import pytest

from bench import ksm
from system import memmerge


@pytest.fixture
def standin_sysfs(tmp_path, monkeypatch):
    d = tmp_path / "standin-ksm"
    d.mkdir()
    for key, value in (("run", 0), ("pages_to_scan", 100), ("sleep_millisecs", 50),
                       ("full_scans", 7), ("pages_sharing", 0)):
        (d / key).write_text(f"{value}\n")
    monkeypatch.setattr(memmerge, "KSM_DIR", str(d))
    return d


def values(d):
    return {k: int((d / k).read_text()) for k in ("run", "pages_to_scan", "sleep_millisecs")}


def test_on_drives_ksmd_and_puts_it_back(standin_sysfs, monkeypatch):
    monkeypatch.setattr(ksm, "SETTLE_SCANS", 2)
    hold = ksm.Ksm("on", 300)
    note = hold.start()
    assert note.startswith("on: ksmd 300 pages per 20 ms"), note
    assert values(standin_sysfs) == {"run": 1, "pages_to_scan": 300, "sleep_millisecs": 20}
    assert hold.fleet_setting == "auto"

    seen = {}

    def kernel():      # the stand-in's "ksmd": two full scans while the hold settles
        time.sleep(0.3)
        seen["settle_rate"] = int((standin_sysfs / "pages_to_scan").read_text())
        (standin_sysfs / "full_scans").write_text("9\n")
        (standin_sysfs / "pages_sharing").write_text("1234\n")
    t = threading.Thread(target=kernel)
    t.start()
    out = hold.settle()
    t.join()
    assert seen["settle_rate"] == ksm.SETTLE_PAGES
    assert out["ksm_settle_scans"] == 2 and out["ksm_pages_sharing"] == 1234
    assert 0.3 <= out["ksm_settle_s"] < 5
    assert int((standin_sysfs / "pages_to_scan").read_text()) == 300   # back to measuring

    hold.restore()
    assert values(standin_sysfs) == {"run": 0, "pages_to_scan": 100, "sleep_millisecs": 50}
    hold.restore()          # twice is harmless (the harness's cleanup may call it again)
    assert values(standin_sysfs)["run"] == 0


def test_settle_stops_when_the_fleet_dies(standin_sysfs):
    hold = ksm.Ksm("on", 200)
    hold.start()
    t0 = time.monotonic()
    out = hold.settle(alive=lambda: time.monotonic() - t0 < 0.2)
    assert out["ksm_settle_scans"] == 0 and out["ksm_settle_s"] < 2
    hold.restore()


@pytest.mark.parametrize("mode,fleet", [("host", "auto"), ("off", "off")])
def test_host_and_off_write_nothing(standin_sysfs, mode, fleet):
    hold = ksm.Ksm(mode, 200)
    note = hold.start()
    assert ("as the host has it" in note) if mode == "host" else note.startswith("off")
    assert hold.settle() == {}
    hold.restore()
    assert values(standin_sysfs) == {"run": 0, "pages_to_scan": 100, "sleep_millisecs": 50}
    assert hold.fleet_setting == fleet


def test_no_ksm_and_no_permission_are_said(tmp_path, monkeypatch):
    monkeypatch.setattr(memmerge, "KSM_DIR", str(tmp_path / "missing"))
    assert ksm.Ksm("on", 200).start() == "unavailable (this kernel has no KSM)"
    d = tmp_path / "readonly"
    d.mkdir()
    for key in ("run", "pages_to_scan", "sleep_millisecs"):
        (d / key).write_text("0\n")
    monkeypatch.setattr(memmerge, "KSM_DIR", str(d))
    monkeypatch.setattr(ksm, "_write", _refuse)
    hold = ksm.Ksm("on", 200)
    assert hold.start().startswith("unavailable (Permission denied")
    assert not hold.driving


def _refuse(key, value):
    raise PermissionError(13, "Permission denied")


def test_a_bad_mode_is_refused():
    with pytest.raises(ValueError, match="--ksm: expected one of"):
        ksm.Ksm("maybe", 200)
