"""The chaos harness's bookkeeping of local-Telegram restarts.

Found by a 5-minute in-process run (seed 11): two restarts of the local Telegram 3 s apart. The
first restart's recovery check was still pending when the second one stopped the server, and
the harness's status poll during the down time asked the stopped server for its crowd's
answers: AttributeError, and the run ended without its checks. Now a stopped server counts as
no answers yet, and answers seen by any later incarnation end the earlier restart too."""
from bench.chaos import ChaosRun, LocalTG


def _run(tmp_path) -> ChaosRun:
    run = ChaosRun({"base": "inprocess", "seed": 11, "workdir": str(tmp_path)})
    run.tg = LocalTG(tmp_path, flood_limits=False)     # never started: like inside a restart
    return run


def test_poll_while_the_server_is_down_keeps_the_restart_pending(tmp_path):
    run = _run(tmp_path)
    ev = {"kind": "restart_tg", "t": 0.0, "incarnation": 0, "ok": None}
    run.pending.append(ev)

    assert run.crowd_answered() == 0
    run.check_recoveries([])          # raised AttributeError before the fix

    assert run.pending == [ev]
    assert ev["ok"] is None


def test_answers_after_a_second_restart_end_both(tmp_path):
    run = _run(tmp_path)
    first = {"kind": "restart_tg", "t": 0.0, "incarnation": 2, "ok": None}
    second = {"kind": "restart_tg", "t": 3.0, "incarnation": 3, "ok": None}
    kill = {"kind": "kill", "t": 1.0, "target": "root/bots/b1/bot"}
    run.pending += [first, second, kill]

    run.restarts_answered(0)
    assert run.pending == [first, second, kill]

    run.restarts_answered(4)
    assert run.pending == [kill]      # other faults wait for their own evidence
    assert first["ok"] is True and second["ok"] is True
    assert first["recovered_s"] >= 0.0
