"""Medians over repeated runs, the targets (PASS/FAIL), the printed table and the JSON files.

Why: runs are noisy on a shared 2-core machine, so every number reported is the median over
`--repeat` runs of the same workload (the individual runs stay in the JSON). The targets are the
project's stated goals, evaluated on those medians, with the reason printed next to each.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench.harness import median
from bench.sut import SYSTEM_LABELS

ECHO_METRICS = ("startup_s", "ready_s", "p50_ms", "p90_ms", "p99_ms", "offered_per_s",
                "replies_per_s", "peak_rate", "peak_p50_ms", "peak_p99_ms", "cpu_s_per_1k", "cpu_cores",
                "server_cores", "other_cores", "ksmd_cores",
                "rss_mb", "pss_mb", "idle_rss_mb", "idle_pss_mb", "processes", "ksm_settle_s", "kept_up_pss_mb", "kept_up_rate")
RECOVERY_METRICS = ("startup_s", "recovery_s", "backend_restarted_s", "lost", "lost_victim",
                    "lost_others", "sent", "duplicates")
FIDELITY_METRICS = ("startup_s", "flood_waits", "achieved_per_s", "allowed_per_s", "achieved_pct",
                    "min_bot_pct", "first_half_per_s", "second_half_per_s", "cpu_cores",
                    "p50_ms", "p99_ms")


def summarize(runs: list[dict], keys, metrics) -> list[dict]:
    """Group RUNS by KEYS; per group the median of each metric over the runs without error."""
    groups: dict[tuple, list] = {}
    for r in runs:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if not r.get("error") and not r.get("skipped")]
        row = dict(zip(keys, key))
        row["runs"] = len(rs)
        row["ok_runs"] = len(ok)
        errors = [r["error"] for r in rs if r.get("error")]
        if errors:
            row["errors"] = errors
        skipped = [r["skipped"] for r in rs if r.get("skipped")]
        if skipped:
            row["skipped"] = skipped[0]
        for m in metrics:
            v = median([r.get(m) for r in ok])
            row[m] = round(v, 3) if isinstance(v, float) else v
        out.append(row)
    return out


# ------------------------------------------------------------------ targets -----------------
def _find(echo, system, bots, delay):
    for r in echo:
        if r["system"] == system and r["bots"] == bots and r["delay_ms"] == delay and r["ok_runs"]:
            return r
    return None


def _t(name, passed, value, why):
    return {"target": name, "result": "PASS" if passed else ("FAIL" if passed is not None else "N/A"),
            "value": value, "why": why}


def targets(echo: list[dict], recovery: dict | None, fidelity: dict | None) -> list[dict]:
    out = []
    combos = sorted({(r["bots"], r["delay_ms"]) for r in echo})
    for bots, delay in combos:
        a = _find(echo, "baseline-a", bots, delay)
        ip = _find(echo, "tgfleet-inprocess", bots, delay)
        pr = _find(echo, "tgfleet-processes", bots, delay)
        where = f"{bots} bots, {delay:g} ms"
        name = f"inprocess replies/s >= (a) and p99 < (a) [{where}]"
        if a and ip and ip["replies_per_s"] is not None and a["replies_per_s"] is not None:
            ok_rate = ip["replies_per_s"] >= a["replies_per_s"]
            ok_p99 = (ip["p99_ms"] is not None and a["p99_ms"] is not None
                      and ip["p99_ms"] < a["p99_ms"])
            out.append(_t(name, ok_rate and ok_p99,
                          f"{ip['replies_per_s']:.0f}/s vs {a['replies_per_s']:.0f}/s; "
                          f"p99 {ip['p99_ms']} vs {a['p99_ms']} ms",
                          ("" if ok_rate else "fewer replies/s than (a); ")
                          + ("" if ok_p99 else "p99 not lower than (a)")))
        else:
            out.append(_t(name, None, None, "not measured (tgfleet or (a) missing/failed)"))
        name = f"processes replies/s within 2x of (a) [{where}]"
        if a and pr and pr["replies_per_s"] is not None and a["replies_per_s"]:
            ratio = pr["replies_per_s"] / a["replies_per_s"]
            out.append(_t(name, ratio >= 0.5, f"{pr['replies_per_s']:.0f}/s vs "
                          f"{a['replies_per_s']:.0f}/s ({ratio:.2f}x)",
                          "" if ratio >= 0.5 else "less than half of (a)"))
        else:
            out.append(_t(name, None, None, "not measured"))
    pss = [r["pss_mb"] for r in echo if r["system"] == "tgfleet-processes" and r["bots"] == 10
           and r["ok_runs"] and r["pss_mb"] is not None]
    idle = [r["idle_pss_mb"] for r in echo if r["system"] == "tgfleet-processes" and r["bots"] == 10
            and r["ok_runs"] and r["idle_pss_mb"] is not None]
    kept = [(r["kept_up_pss_mb"], r["kept_up_rate"]) for r in echo
            if r["system"] == "tgfleet-processes" and r["bots"] == 10 and r["ok_runs"]
            and r.get("kept_up_pss_mb") is not None]
    name = "10 bots in processes < 300 MB PSS (loaded, worst delay)"
    if pss:
        value = f"{max(pss):.0f} MB loaded, {max(idle):.0f} MB idle" if idle else f"{max(pss):.0f} MB"
        if kept:
            k = max(kept)
            value += f", {k[0]:.0f} MB up to {k[1]:.0f} msg/s offered (kept up)"
        out.append(_t(name, max(pss) < 300, value, "" if max(pss) < 300 else "over 300 MB"))
    else:
        out.append(_t(name, None, None, "not measured"))
    name = "recovery after SIGKILL of a backend < 1 s"
    if recovery and recovery.get("ok_runs") and recovery.get("recovery_s") is not None:
        v = recovery["recovery_s"]
        out.append(_t(name, v < 1.0, f"{v:.2f} s, lost {recovery.get('lost')}",
                      "" if v < 1.0 else "slower than 1 s"))
    else:
        out.append(_t(name, None if not (recovery and recovery.get("ok_runs")) else False, None,
                      (recovery or {}).get("skipped") or "not measured / never answered"))
    for system in ("tgfleet-inprocess", "tgfleet-processes"):
        name = f"startup of 10 bots < 3 s ({SYSTEM_LABELS[system]})"
        vals = [r["startup_s"] for r in echo if r["system"] == system and r["bots"] == 10
                and r["ok_runs"] and r["startup_s"] is not None]
        if vals:
            v = median(vals)
            out.append(_t(name, v < 3.0, f"{v:.2f} s", "" if v < 3.0 else "slower than 3 s"))
        else:
            out.append(_t(name, None, None, "not measured"))
    name = "rate-limit fidelity: 0 FLOOD_WAIT and >= 90% of allowed"
    if fidelity and fidelity.get("ok_runs") and fidelity.get("achieved_pct") is not None:
        fw, pct = fidelity["flood_waits"], fidelity["achieved_pct"]
        why = []
        if fw:
            why.append(f"{fw} FLOOD_WAITs")
        if pct < 90:
            why.append("under 90% of allowed")
        out.append(_t(name, not why, f"{fw} FLOOD_WAIT, {fidelity['achieved_per_s']:.0f}/s of "
                      f"{fidelity['allowed_per_s']:.0f}/s allowed ({pct:.0f}%)", "; ".join(why)))
    else:
        out.append(_t(name, None, None, (fidelity or {}).get("skipped") or "not measured"))
    return out


# ------------------------------------------------------------------ table -------------------
def _f(v, fmt="%.0f"):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return fmt % v


def table(result: dict) -> str:
    lines = []
    echo = result.get("echo", [])
    if echo:
        hdr = ("%-28s %4s %5s %9s %9s %7s %7s %8s %8s %7s %7s %8s %6s" % (
            "system", "bots", "delay", "offered/s", "replies/s", "p50 ms", "p99 ms", "pk p99",
            "startup", "RSS MB", "PSS MB", "CPU s/1k", "other"))
        opts = result["options"]
        samples = opts.get("light_samples") or 0
        lines += ["Echo fleet (medians of %s run(s); p50/p99 at light load = %s msg/s per bot%s; "
                  "offered/replies/pk p99 at the best step of the rate ladder)" % (
                      opts["repeat"], opts["light_rate_per_bot"],
                      f", >= {samples} messages per run" if samples else ""),
                  hdr, "-" * len(hdr)]
        for r in sorted(echo, key=lambda r: (r["bots"], r["delay_ms"], r["system"])):
            label = SYSTEM_LABELS.get(r["system"], r["system"])
            if not r["ok_runs"]:
                why = r.get("skipped") or (r.get("errors") or ["failed"])[0]
                lines.append("%-28s %4d %4gms  %s" % (label, r["bots"], r["delay_ms"],
                                                     ("SKIPPED: " if r.get("skipped") else "FAILED: ")
                                                     + why.splitlines()[0][:110]))
                continue
            lines.append("%-28s %4d %4gms %9s %9s %7s %7s %8s %7ss %7s %7s %8s %6s" % (
                label, r["bots"], r["delay_ms"], _f(r["offered_per_s"]), _f(r["replies_per_s"]),
                _f(r["p50_ms"], "%.1f"), _f(r["p99_ms"], "%.1f"), _f(r["peak_p99_ms"]),
                _f(r["startup_s"], "%.2f"), _f(r["rss_mb"]), _f(r["pss_mb"]),
                _f(r["cpu_s_per_1k"], "%.2f"), _f(r["other_cores"], "%.2f")))
        lines.append("pk p99: p99 at the best ladder step (mostly queueing); CPU s/1k: CPU seconds "
                     "of the system per 1,000 replies at that step; other: CPU cores used by other "
                     "work on this machine during that window (contamination)")
        if result.get("ksm"):
            lines.append("KSM (kernel same-page merging, the processes base's memory; its ksmd CPU "
                         "is in CPU s/1k): " + result["ksm"])
        lines.append("")
    rec = result.get("recovery")
    if rec:
        if rec.get("ok_runs"):
            # The status poll (every 0.1 s) may not have seen the new pid before the answer came.
            restarted = ("new backend process after %s s" % _f(rec["backend_restarted_s"], "%.2f")
                         if rec.get("backend_restarted_s") is not None
                         else "answered before a status poll saw the new backend process")
            lines.append("Recovery (tgfleet processes, %s bots, %s msg/s): backend SIGKILLed -> bot "
                         "answers again in %s s (%s); lost %s of %s "
                         "messages (%s of the killed bot's, %s of the others')" % (
                             rec["bots"], rec["rate"], _f(rec["recovery_s"], "%.2f"), restarted,
                             _f(rec["lost"]), _f(rec["sent"]),
                             _f(rec["lost_victim"]), _f(rec["lost_others"])))
        else:
            lines.append("Recovery: " + ("SKIPPED: " + rec["skipped"] if rec.get("skipped")
                                         else "FAILED: " + (rec.get("errors") or ["?"])[0].splitlines()[0]))
    fid = result.get("fidelity")
    if fid:
        if fid.get("ok_runs"):
            lines.append("Rate-limit fidelity (%s, %s bots, %s users, offered %s msg/s, %ss, server "
                         "flood limits on): %s FLOOD_WAIT; %s/s achieved of %s/s allowed (%s%%; "
                         "worst bot %s%%; first/second half %s/%s per s; %s cores)" % (
                             SYSTEM_LABELS.get(fid["system"], fid["system"]), fid["bots"], fid["users"],
                             fid["offered_rate"], fid["seconds"], _f(fid["flood_waits"]),
                             _f(fid["achieved_per_s"], "%.1f"), _f(fid["allowed_per_s"], "%.1f"),
                             _f(fid["achieved_pct"], "%.1f"), _f(fid["min_bot_pct"], "%.1f"),
                             _f(fid.get("first_half_per_s")), _f(fid.get("second_half_per_s")),
                             _f(fid.get("cpu_cores"), "%.2f")))
        else:
            lines.append("Rate-limit fidelity: " + ("SKIPPED: " + fid["skipped"] if fid.get("skipped")
                                                    else "FAILED: " + (fid.get("errors") or ["?"])[0].splitlines()[0]))
    if rec or fid:
        lines.append("")
    tg = result.get("targets", [])
    if tg:
        w = max(len(t["target"]) for t in tg)
        lines.append("Targets")
        for t in tg:
            lines.append("  %-4s  %-*s  %s%s" % (t["result"], w, t["target"], t["value"] or "",
                                                 ("  (" + t["why"] + ")") if t["why"] else ""))
    return "\n".join(lines)


def write_json(result: dict, out_dir) -> tuple[str, str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"bench-{stamp}.json"
    data = json.dumps(result, indent=1, default=str)
    path.write_text(data)
    latest = out_dir / "latest.json"
    tmp = latest.with_suffix(".json.tmp%d" % os.getpid())
    tmp.write_text(data)
    os.replace(tmp, latest)
    return str(path), str(latest)
