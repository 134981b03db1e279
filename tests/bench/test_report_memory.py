"""The memory target line of the bench table: judged on the worst PSS of the 10-bot processes
cells (every ladder step, overloaded ones included), and it also says the idle PSS and the PSS
over the steps the fleet kept up with, so a reader sees where the memory goes."""
from bench import report


def row(pss, idle, kept=None, rate=None, bots=10, system="tgfleet-processes"):
    return {"system": system, "bots": bots, "delay_ms": 0.0, "ok_runs": 1, "pss_mb": pss,
            "idle_pss_mb": idle, "kept_up_pss_mb": kept, "kept_up_rate": rate,
            "replies_per_s": None, "startup_s": None}


def memory_target(echo):
    return next(t for t in report.targets(echo, None, None) if "300 MB PSS" in t["target"])


def test_worst_loaded_decides_and_the_kept_up_memory_is_shown():
    t = memory_target([row(333.0, 218.0, 292.0, 1000.0), row(331.0, 219.0, 291.0, 1414.0),
                       row(900.0, 800.0, 850.0, 500.0, bots=50)])
    assert t["result"] == "FAIL" and t["why"] == "over 300 MB"
    assert t["value"] == "333 MB loaded, 219 MB idle, 292 MB up to 1000 msg/s offered (kept up)"


def test_under_300_passes_and_old_results_without_kept_up_still_read():
    t = memory_target([row(290.0, 210.0)])
    assert t["result"] == "PASS" and t["value"] == "290 MB loaded, 210 MB idle"


def test_not_measured():
    assert memory_target([row(200.0, 100.0, system="tgfleet-inprocess")])["result"] == "N/A"
