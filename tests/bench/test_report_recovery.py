"""The recovery line of the bench table says what was measured when the bot answered before
the harness's status poll (every 0.1 s) saw the new backend process (it printed "after - s")."""
from bench import report

REC = {"ok_runs": 1, "bots": 10, "rate": 50.0, "recovery_s": 0.174, "lost": 0, "sent": 210,
       "lost_victim": 0, "lost_others": 0}


def _line(rec) -> str:
    return next(l for l in report.table({"recovery": rec}).splitlines()
                if l.startswith("Recovery"))


def test_recovery_line_with_and_without_the_restart_time():
    assert "new backend process after 0.15 s" in _line({**REC, "backend_restarted_s": 0.15})
    line = _line({**REC, "backend_restarted_s": None})
    assert "answered before a status poll saw the new backend process" in line
    assert "answers again in 0.17 s" in line and " - s" not in line
