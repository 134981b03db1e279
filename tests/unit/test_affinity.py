"""system.cpu_affinity: parsing, the choice per base, and what a bad value says."""
import os
import threading

import pytest

from system import affinity
from system.config import ConfigError, load_config


def test_parse_accepts_auto_none_and_core_lists():
    assert affinity.parse("auto") == "auto"
    assert affinity.parse(" None ") == "none"
    assert affinity.parse("1") == [1]
    assert affinity.parse("3, 0-1") == [0, 1, 3]


@pytest.mark.parametrize("bad", ["", "fast", "1-", "-1", "2-1", "1;2", "0,,1"])
def test_parse_rejects_anything_else(bad):
    with pytest.raises(affinity.AffinityError):
        affinity.parse(bad)


def test_auto_pins_the_inprocess_base_to_one_core_spread_by_pid():
    cores = {0, 1, 2, 3}
    assert affinity.choose("auto", "inprocess", cores, pid=4242) == [2]
    assert affinity.choose("auto", "inprocess", cores, pid=4243) == [3]
    # one usable core: nothing to gain; processes base: every actor process may use any core
    assert affinity.choose("auto", "inprocess", {5}, pid=1) is None
    assert affinity.choose("auto", "processes", cores, pid=1) is None
    assert affinity.choose("none", "inprocess", cores, pid=1) is None


def test_an_explicit_list_applies_to_both_bases_and_must_be_usable():
    assert affinity.choose("1-2", "processes", {0, 1, 2}, pid=1) == [1, 2]
    with pytest.raises(affinity.AffinityError, match=r"cores \[7\] are not available"):
        affinity.choose("1,7", "inprocess", {0, 1}, pid=1)


def test_config_reports_a_bad_value_by_its_name():
    with pytest.raises(ConfigError, match="system.cpu_affinity: expected 'auto'"):
        load_config(None, env={"TGFLEET_SYSTEM_CPU_AFFINITY": "all of them"})
    assert load_config(None, env={})["system"]["cpu_affinity"] == "auto"


def test_pin_process_pins_threads_that_already_run():
    """Affinity is per thread on Linux: a thread started before the pin must be pinned too."""
    usable = sorted(os.sched_getaffinity(0))
    target = [usable[-1]]
    started, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        started.set()
        release.wait(5)
        seen["cores"] = sorted(os.sched_getaffinity(0))
    t = threading.Thread(target=worker)
    t.start()
    started.wait(5)
    try:
        assert affinity.pin_process(target) >= 2
    finally:
        release.set()
        t.join(5)
        affinity.pin_process(usable)       # this test process goes back to every core
    assert seen["cores"] == target
