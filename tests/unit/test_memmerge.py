"""system.memory_merge (system/memmerge.py): which setting asks on which base, what the kernel
answers, that forked children inherit the mark, and what a bad value or a refusal says.

The kernel is real: the marking runs in a forked child so this test process stays unmarked.
Where the kernel has no per-process KSM, the tests check the refusal path instead."""
import pytest

from system import memmerge
from system.config import ConfigError, load_config
from tests.support.forked import run_in_fork


def test_which_setting_asks_on_which_base():
    assert memmerge.wanted("auto", "processes")
    assert not memmerge.wanted("auto", "inprocess")
    assert memmerge.wanted("on", "inprocess") and memmerge.wanted("on", "processes")
    assert not memmerge.wanted("off", "processes")
    with pytest.raises(ValueError, match="expected one of"):
        memmerge.wanted("yes", "processes")


def test_off_and_auto_in_process_do_not_ask():
    before = memmerge.enabled()
    assert memmerge.apply("off", "processes") == "memory merge: off"
    assert memmerge.apply("auto", "inprocess") == "memory merge: off"
    assert memmerge.enabled() == before


def test_config_default_and_a_bad_value():
    assert load_config(None, env={})["system"]["memory_merge"] == "auto"
    assert load_config(None, env={"TGFLEET_SYSTEM_MEMORY_MERGE": "off"})[
        "system"]["memory_merge"] == "off"
    with pytest.raises(ConfigError, match=r"system.memory_merge: expected one of \['auto', 'on', "
                                          r"'off'\], got 'yes'"):
        load_config(None, env={"TGFLEET_SYSTEM_MEMORY_MERGE": "yes"})


def test_on_marks_this_process_and_its_children():
    supported = memmerge.enabled() is not None

    def child():
        if not supported:
            with pytest.raises(memmerge.MemoryMergeError, match="the kernel refused"):
                memmerge.apply("on", "processes")
            assert memmerge.apply("auto", "processes").startswith("memory merge: not available")
            return
        line = memmerge.apply("on", "inprocess")
        assert line.startswith(("memory merge: on (", "memory merge: requested")), line
        assert memmerge.enabled() is True
        run = memmerge.ksmd()["run"]
        assert ("ksmd scans" in line) == (run == 1), (line, run)

        def grandchild():           # a fork (as thespian makes every actor process) inherits it
            assert memmerge.enabled() is True
            assert memmerge.merge_any() in (True, None)
        assert run_in_fork(grandchild) == 0

    assert run_in_fork(child) == 0
    assert memmerge.enabled() in (False, None)      # this process was left alone


def test_the_hosts_ksmd_settings():
    k = memmerge.ksmd()
    assert set(k) == {"run", "pages_to_scan", "sleep_millisecs"}
    assert k["run"] in (None, 0, 1, 2)
    assert memmerge.ksm_value("no_such_setting") is None
