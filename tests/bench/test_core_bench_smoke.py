"""bench.core_bench runs end to end (processes base, one kill per actor, a short idle window)
and writes the JSON it promises, with positive numbers. It checks the tool, not the targets."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_core_bench_smoke(tmp_path):
    out = tmp_path / "core.json"
    res = subprocess.run([sys.executable, "-m", "bench.core_bench", "--repeat", "1",
                          "--idle-seconds", "2", "--settle-seconds", "1", "--bases", "processes",
                          "--json", str(out)],
                         cwd=str(REPO), capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "PASS" in res.stdout or "FAIL" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["leftover_processes"] == []
    assert list(doc["bases"]) == ["processes"]
    r = doc["bases"]["processes"]
    assert r["exit_code"] == 0

    mem = r["memory"]
    assert mem["core_pss_mb"] > 0 and mem["system_pss_mb"] > mem["core_pss_mb"]
    roles = set(mem["per_process"])
    assert {"launcher", "thespian admin", "thespian logger", "root", "control", "store",
            "metrics", "ratelimit", "eventbus", "bots"} <= roles, roles
    assert all(p["pss_mb"] > 0 for p in mem["per_process"].values())

    cpu = r["idle_cpu"]
    assert cpu["window_s"] >= 2 and cpu["processes"] == len(roles)
    # an idle fleet may legitimately use no measurable CPU (ticks of 10 ms) in 2 s: check the
    # measurement covered every process and is consistent, not that it is non-zero
    assert cpu["cpu_seconds"] >= 0 and len(cpu["per_process"]) == len(roles)
    assert abs(sum(p["cpu_seconds"] for p in cpu["per_process"].values())
               - cpu["cpu_seconds"]) < 0.01 * len(roles) + 1e-6

    for target in ("store", "eventbus", "ratelimit"):
        t = r["restart"][target]
        assert len(t["kills"]) == 1
        kill = t["kills"][0]
        assert kill["new_pid"] != kill["old_pid"]
        assert t["running_s"]["median"] > 0 and t["answer_s"]["max"] >= t["running_s"]["max"]
    assert r["restart"]["store"]["kills"][0]["answer_s"] > 0
    assert all(a["state"] == "running" for a in r["restart"]["after"].values())

    metrics = {(row["metric"], row["base"]) for row in doc["table"]}
    assert any(m.startswith("core PSS") for m, _ in metrics)
    assert any(m.startswith("idle CPU") for m, _ in metrics)
    assert any(m.startswith("restart store") for m, _ in metrics)
