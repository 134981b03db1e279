"""The benchmark workloads: echo fleet (throughput, latency, memory, CPU, startup), recovery after
a SIGKILLed backend, and rate-limit fidelity. Each function runs ONE run against a fresh local
Telegram and a freshly started system under test, and returns a flat dict of measurements.

Echo fleet run (system S, N bots, round trip D ms), in order:
  1. fresh local Telegram, flood limits off, no delay; N bot accounts; start S.
  2. startup: spawn -> every bot answered a probe sent by a simulated user ("startup_s").
     Idle memory is sampled here.
  3. set the server's delay to D ms (`set_limits(delay_ms=D)`).
  4. a ladder of offered rates from the crowd (`users` simulated users spread over the bots):
     first light load (`light_rate_per_bot` msg/s per bot for `light_s`, longer if that would
     give fewer than `light_samples` messages; see light_window), then `ladder_start`,
     doubling up to `rate`. Each step: warm-up, a measured window, crowd stopped, then the harness
     waits until every message is answered (`drain_s` at most) so no stale answer leaks into the
     next step. The ladder stops at the first saturated step (answered < 85% of offered in the
     window and its backlog took over 1 s to answer, or not drained; see SATURATED_BELOW),
     after one refinement step at the geometric middle between the last good rate and the
     saturated one.
     - p50/p99: latency at light load (crowd send -> bot answer): per-message cost, no queueing.
     - replies/s: the best step's answers in its window / window; offered/s: that step's sends.
       (Overloading a system far beyond its capacity makes some designs collapse — the ladder
       finds the capacity instead of measuring the collapse; every step stays in the JSON.)
     - CPU s/1k: CPU seconds of every process of S in the best step's window per 1,000 answers.
     - RSS/PSS: every process of S at the end of each window; the largest is reported.
     - server_cores / other_cores: the local Telegram's CPU and everything else on the machine
       during the best window (this machine is shared: other_cores shows contamination).
  5. S gets SIGTERM (then SIGKILL to its group/session after a grace period); the server stops.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from bench import harness, ksm
from bench.sut import OPEN_RATELIMIT, local_world, make_sut, wait_all_answering

log = logging.getLogger("bench.workloads")


# A step is saturated when fewer answers than this share of the messages sent in its window came
# back in the window. Not 0.9+: with a short window a system that keeps up but answers with a few
# hundred ms of latency counts fewer answers in the window than messages sent.
SATURATED_BELOW = 0.85
# ... and its backlog took longer than this to answer after the crowd stopped (a system that keeps
# up but answers late has a backlog of about rate x latency, which drains within its latency).
SATURATED_DRAIN_S = 1.0


class RunError(RuntimeError):
    """A run could not be completed (the system did not start, died, ...)."""


def _lat(stats: dict, key: str):
    v = (stats.get("latency_ms") or {}).get(key)
    return round(v, 2) if v is not None else None


def sleep_watch(sut, seconds: float) -> None:
    """Sleep SECONDS, failing early if the system under test exits."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        if sut.proc is not None and sut.proc.poll() is not None:
            raise RunError(f"{sut.name} exited with {sut.proc.returncode} during the run; "
                           f"log {sut.log_path}:\n{harness.tail(sut.log_path, 2000)}")
        time.sleep(min(0.1, left))


def sut_options(p: dict, echo: bool) -> dict:
    o = {"provisioned": p.get("provisioned", False), "pyrogram_cache": p.get("pyrogram_cache", 0),
         "tgfleet_library": p.get("tgfleet_library", "telethon"),
         "tgfleet_log_level": p.get("tgfleet_log_level", "WARNING"),
         "memory_merge": ksm.HOLD.fleet_setting,
         "process_unit": p.get("process_unit", "config")}
    if echo:
        o["tgfleet_ratelimit"] = OPEN_RATELIMIT
    return o


def start_and_wait(sut, world, p: dict) -> dict:
    """Start SUT; wait for its ready line and for every bot to answer a probe."""
    n = len(world.bots)
    timeout = p.get("startup_timeout_s", 60.0) + 2.0 * n
    t0 = sut.start()
    t_ready = sut.wait_ready(timeout)
    if t_ready is None:
        raise RunError(f"{sut.name}: no {sut.ready_needle!r} within {timeout:.0f}s; log "
                       f"{sut.log_path}:\n{harness.tail(sut.log_path, 2000)}")
    t_all = wait_all_answering(world, world.bot_ids, max(5.0, timeout - (t_ready - t0)))
    if t_all is None:
        raise RunError(f"{sut.name}: not every bot answered a probe within {timeout:.0f}s; "
                       f"log {sut.log_path}:\n{harness.tail(sut.log_path, 2000)}")
    return {"ready_s": round(t_ready - t0, 3), "startup_s": round(t_all - t0, 3)}


def drain(control, cap_s: float, idle_s: float = 1.5) -> tuple[dict, bool]:
    """Wait until every crowd message is answered (True), or no progress for IDLE_S / CAP_S
    passed (False). Returns the last crowd stats (with "drain_s": how long it took) and whether
    it drained."""
    t0 = time.monotonic()
    st, ok = _drain(control, cap_s, idle_s)
    st["drain_s"] = round(time.monotonic() - t0, 2)
    return st, ok


def _drain(control, cap_s: float, idle_s: float) -> tuple[dict, bool]:
    end = time.monotonic() + cap_s
    last_answered, last_change = -1, time.monotonic()
    while True:
        st = control.crowd_stats()
        if st["answered"] >= st["sent"]:
            return st, True
        now = time.monotonic()
        if st["answered"] != last_answered:
            last_answered, last_change = st["answered"], now
        if now >= end or now - last_change >= idle_s:
            return st, False
        time.sleep(0.1)


def _mem_fields(prefix: str, m: dict) -> dict:
    return {f"{prefix}rss_mb": m["rss_mb"], f"{prefix}pss_mb": m["pss_mb"],
            f"{prefix}processes": m["processes"]}


# ------------------------------------------------------------------ echo fleet ---------------
def ladder(light: float, start: float, top: float) -> list[float]:
    """Offered rates: the light rate, then START, 2*START, ... up to TOP (included)."""
    rates = [light]
    r = start
    while r < top:
        if r > light:
            rates.append(r)
        r *= 2
    if top > light:
        rates.append(top)
    return rates


def light_window(p: dict, n_bots: int) -> float:
    """Seconds of light load: `light_s`, or longer so the fleet gets at least `light_samples`
    messages. Why: p99 over 50 messages is the slowest one or two, so a single stall decided
    the table's p99 cells; over 200 it is the 2nd-3rd slowest."""
    rate = p["light_rate_per_bot"] * n_bots
    need = p.get("light_samples", 0) / rate if rate > 0 else 0.0
    return max(p["light_s"], need)


def load_step(world, sut, rate: float, users: int, warm_s: float, window_s: float,
              prefix: str, labels: dict | None = None) -> tuple[dict, dict]:
    """Offer RATE msg/s from the crowd; after WARM_S measure a WINDOW_S window; stop the crowd.
    Returns (step measurements, memory at the end of the window)."""
    c = world.control
    c.crowd_start(world.bot_ids, users=users, rate_per_s=rate, duration_s=None, text_prefix=prefix)
    sleep_watch(sut, warm_s)
    procs = sut.processes()
    s0, cpu0 = c.crowd_stats(), harness.cpu_snapshot(procs)
    m0, srv0, k0 = harness.machine_busy(), harness.process_cpu(world.tg.pid), ksm.HOLD.cpu()
    sleep_watch(sut, window_s)
    procs = sut.processes()
    s1, cpu1 = c.crowd_stats(), harness.cpu_snapshot(procs)
    m1, srv1, k1 = harness.machine_busy(), harness.process_cpu(world.tg.pid), ksm.HOLD.cpu()
    mem = harness.memory(procs, labels)
    c.crowd_stop()
    window = cpu1.at - cpu0.at
    answered = s1["answered"] - s0["answered"]
    sent = s1["sent"] - s0["sent"]
    # The kernel's merging thread works for the system that asked for merging (the processes
    # base); it is idle otherwise. Charged to the system, not to "other".
    ksmd = max(0.0, k1 - k0)
    cpu = harness.cpu_delta(cpu0, cpu1) + ksmd
    server = srv1 - srv0
    other = max(0.0, (m1[1] - m0[1]) - cpu - server)
    return {
        "rate": rate,
        "window_s": round(window, 2),
        "offered_per_s": round(sent / window, 1),
        "replies_per_s": round(answered / window, 1),
        "answered_ratio": round(answered / sent, 3) if sent else None,
        "p50_ms": _lat(s1, "p50"), "p99_ms": _lat(s1, "p99"),
        "cpu_s": round(cpu, 2), "cpu_cores": round(cpu / window, 2),
        "cpu_s_per_1k": round(1000.0 * cpu / answered, 3) if answered else None,
        "server_cores": round(server / window, 2), "other_cores": round(other / window, 2),
        "ksmd_cores": round(ksmd / window, 3),
        "rss_mb": mem["rss_mb"], "pss_mb": mem["pss_mb"], "processes": mem["processes"],
        "duplicates": s1["duplicates"], "unmatched": s1["unmatched_bot_messages"],
    }, mem


def echo_run(system: str, n_bots: int, delay_ms: float, p: dict, workdir) -> dict:
    """One echo-fleet run: startup, then a ladder of offered rates (light load first), each step
    drained before the next; stops after the first saturated step (answered < SATURATED_BELOW of
    offered in its window), with one refinement step between the last good rate and the
    saturated one."""
    workdir = Path(workdir)
    light = round(p["light_rate_per_bot"] * n_bots, 2)
    rates = ladder(light, p["ladder_start"], p["rate"])
    row = {"system": system, "bots": n_bots, "delay_ms": delay_ms, "users": p["users"],
           "light_rate": light, "max_rate": p["rate"]}
    with local_world(workdir, n_bots, flood_limits=False) as world:
        c = world.control
        sut = make_sut(system, world, workdir, sut_options(p, echo=True))
        row["command"] = " ".join(sut.command())
        try:
            row.update(start_and_wait(sut, world, p))
            if system == "tgfleet-processes":
                row.update(ksm.HOLD.settle(alive=lambda: sut.proc.poll() is None))
            labels = sut.roles()
            row.update(_mem_fields("idle_", harness.memory(sut.processes())))
            if delay_ms:
                c.set_limits(delay_ms=delay_ms)
            steps, mems = [], []
            i = 0
            saturated = refined = False
            while i < len(rates):
                rate = rates[i]
                is_light = i == 0
                st, mem = load_step(world, sut, rate, p["users"], 0.5 if is_light else p["sat_warmup_s"],
                                    light_window(p, n_bots) if is_light else p["sat_window_s"],
                                    "light" if is_light else "load", labels)
                after, drained = drain(c, p["drain_s"])
                st["drained"] = drained
                st["drain_s"] = after["drain_s"]
                if is_light:
                    # Per-message latency: every light-load answer, including late ones.
                    row.update({"p50_ms": _lat(after, "p50"), "p90_ms": _lat(after, "p90"),
                                "p99_ms": _lat(after, "p99"), "light_sent": after["sent"],
                                "light_answered": after["answered"], "light_drained": drained})
                steps.append(st)
                mems.append(mem)
                log.debug("%s %d bots %g ms: step %s", system, n_bots, delay_ms, st)
                keeps_up = (st["answered_ratio"] is not None and st["answered_ratio"] >= SATURATED_BELOW) \
                    or after["drain_s"] <= SATURATED_DRAIN_S
                st["kept_up"] = bool(keeps_up and drained)
                if keeps_up and drained:
                    i += 1
                    continue
                saturated = True
                prev = steps[-2]["rate"] if len(steps) >= 2 else None
                if drained and prev is not None and rate / prev > 1.5 and not refined:
                    # One more point between the last good rate and this one.
                    rates = rates[:i + 1] + [round((prev * rate) ** 0.5)]
                    refined = True
                    i += 1
                    continue
                break
            peak = max(steps, key=lambda s: s["replies_per_s"])
            worst = max(range(len(mems)), key=lambda k: mems[k]["pss_mb"])
            # Memory while the fleet keeps up, beside the worst of the whole ladder (which
            # includes the overloaded steps, whose backlog grows for as long as they last).
            kept = [s for s in steps if s["kept_up"]]
            row["kept_up_pss_mb"] = max(s["pss_mb"] for s in kept) if kept else None
            row["kept_up_rate"] = max(s["rate"] for s in kept) if kept else None
            row.update({
                "steps": steps, "saturated": saturated,
                "offered_per_s": peak["offered_per_s"], "replies_per_s": peak["replies_per_s"],
                "peak_rate": peak["rate"], "peak_p50_ms": peak["p50_ms"], "peak_p99_ms": peak["p99_ms"],
                "cpu_s_per_1k": peak["cpu_s_per_1k"], "cpu_cores": peak["cpu_cores"],
                "server_cores": peak["server_cores"], "other_cores": peak["other_cores"],
                "ksmd_cores": peak["ksmd_cores"],
                **_mem_fields("", mems[worst]), "memory_per_process": mems[worst]["per_process"],
            })
        finally:
            row["stop"] = sut.stop()
    return row


# ------------------------------------------------------------------ recovery -----------------
def recovery_run(p: dict, workdir) -> dict:
    """tgfleet with one process per actor, N bots under crowd load; SIGKILL bot 0's backend
    process; time until that bot answers a probe sent after the kill; messages lost."""
    workdir = Path(workdir)
    n = p["recovery_bots"]
    row = {"system": "tgfleet-processes", "bots": n, "rate": p["recovery_rate"], "users": p["users"]}
    with local_world(workdir, n, flood_limits=False) as world:
        c = world.control
        sut = make_sut("tgfleet-processes", world, workdir, sut_options(p, echo=True))
        try:
            row.update(start_and_wait(sut, world, p))
            victim_id = world.bot_ids[0]
            path = sut.backend_path(0)
            c.crowd_start(world.bot_ids, users=p["users"], rate_per_s=p["recovery_rate"],
                          duration_s=None, text_prefix="rec")
            sleep_watch(sut, p["recovery_load_s"])
            pid = sut.actor_pid(path)
            if not pid or pid == sut.proc.pid:
                raise RunError(f"no separate backend process for {path} (pid {pid})")
            before = c.crowd_stats()
            row["victim_pid"] = pid
            row["victim_answered_before"] = before["per_bot"][str(victim_id)]["answered"]
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            rec = _probe_until_answer(world, sut, victim_id, path, pid, t_kill,
                                      p.get("recovery_timeout_s", 30.0))
            row.update(rec)
            sleep_watch(sut, p["recovery_after_s"])
            c.crowd_stop()
            st, drained = drain(c, p["drain_s"], idle_s=3.0)
            per = st["per_bot"]
            victim = per[str(victim_id)]
            others_lost = sum(v["sent"] - v["answered"] for k, v in per.items() if k != str(victim_id))
            row.update({"sent": st["sent"], "answered": st["answered"], "lost": st["unanswered"],
                        "lost_victim": victim["sent"] - victim["answered"], "lost_others": others_lost,
                        "duplicates": st["duplicates"], "drained": drained,
                        "new_backend_pid": sut.actor_pid(path)})
        finally:
            row["stop"] = sut.stop()
    return row


def _probe_until_answer(world, sut, bot_id: int, path: str, old_pid: int, t_kill: float,
                        timeout: float) -> dict:
    """Probe BOT_ID every 100 ms (from the probe user) until it answers one sent after the kill;
    meanwhile note when the supervisor shows a new backend process."""
    c = world.control
    uid = world.probe_user["user_id"]
    since = world.probe_since
    sent_ids = set()
    out = {"recovery_s": None, "backend_restarted_s": None}
    next_probe = next_status = 0.0
    k = 0
    while time.monotonic() - t_kill < timeout:
        now = time.monotonic()
        if now >= next_probe:
            k += 1
            sent_ids.add(c.send_as(uid, bot_id, "recovery probe %d" % k)["id"])
            next_probe = now + 0.1
        if out["backend_restarted_s"] is None and now >= next_status:
            next_status = now + 0.1
            try:
                new_pid = sut.actor_pid(path)
            except Exception as exc:   # the admin socket may be briefly busy; keep probing
                log.debug("status during recovery: %s", exc)
                new_pid = None
            if new_pid and new_pid != old_pid:
                out["backend_restarted_s"] = round(time.monotonic() - t_kill, 3)
        for m in c.received(uid, since_id=since, limit=1000):
            since = max(since, m["id"])
            if m["from_id"] == bot_id and m.get("reply_to") in sent_ids:
                out["recovery_s"] = round(time.monotonic() - t_kill, 3)
        world.probe_since = since
        if out["recovery_s"] is not None:
            out["probes_sent"] = k
            return out
        time.sleep(0.02)
    out["probes_sent"] = k
    return out


# ------------------------------------------------------------------ rate-limit fidelity -------
def fidelity_run(p: dict, workdir) -> dict:
    """tgfleet (base p['fidelity_base']) with the server's flood limits ON and its own limiter at
    its defaults; every bot is offered far more than Telegram allows. FLOOD_WAITs the server gave
    and achieved replies/s against the allowed maximum."""
    workdir = Path(workdir)
    n = p["fidelity_bots"]
    users = p["fidelity_users"]
    rate = p["fidelity_rate"]
    system = "tgfleet-" + p.get("fidelity_base", "inprocess")
    row = {"system": system, "bots": n, "users": users, "offered_rate": rate,
           "seconds": p["fidelity_seconds"]}
    with local_world(workdir, n, flood_limits=True) as world:
        c = world.control
        sut = make_sut(system, world, workdir, sut_options(p, echo=False))
        try:
            row.update(start_and_wait(sut, world, p))
            c.reset_flood()
            fs0 = c.flood_stats()
            limits = fs0["limits"]
            c.crowd_start(world.bot_ids, users=users, rate_per_s=rate, duration_s=None,
                          text_prefix="flood")
            warm = min(p["fidelity_warmup_s"], p["fidelity_seconds"] / 3)
            sleep_watch(sut, warm)
            procs = sut.processes()
            s0, cpu0 = c.crowd_stats(), harness.cpu_snapshot(procs)
            t0 = time.monotonic()
            half = (p["fidelity_seconds"] - warm) / 2
            sleep_watch(sut, half)
            s_mid = c.crowd_stats()
            t_mid = time.monotonic()
            sleep_watch(sut, p["fidelity_seconds"] - warm - half)
            s1, cpu1 = c.crowd_stats(), harness.cpu_snapshot(sut.processes())
            window = time.monotonic() - t0
            fs1 = c.flood_stats()
            c.crowd_stop()
            achieved = (s1["answered"] - s0["answered"]) / window
            row.update({
                "first_half_per_s": round((s_mid["answered"] - s0["answered"]) / (t_mid - t0), 1),
                "second_half_per_s": round((s1["answered"] - s_mid["answered"])
                                           / (time.monotonic() - t_mid), 1),
                "cpu_cores": round(harness.cpu_delta(cpu0, cpu1) / window, 2),
            })
            allowed_per_bot = {}
            for k, b in enumerate(world.bot_ids):
                chats = _distinct_chats(k, n, users, s1["sent"])
                per_chat_offered = (rate / n) / max(1, chats)
                chat_allowed = chats * min(limits["chat_per_second"], per_chat_offered)
                allowed_per_bot[str(b)] = min(limits["bot_per_second"], chat_allowed, rate / n)
            allowed = sum(allowed_per_bot.values())
            per_bot_achieved = {b: round((s1["per_bot"][b]["answered"] - s0["per_bot"][b]["answered"])
                                         / window, 2) for b in allowed_per_bot}
            row.update({
                "window_s": round(window, 2),
                "limits": limits,
                "distinct_chats_per_bot": _distinct_chats(0, n, users, s1["sent"]),
                "flood_waits": fs1["violations_total"] - fs0.get("violations_total", 0),
                "flood_by_kind": fs1.get("by_kind"),
                "achieved_per_s": round(achieved, 1),
                "allowed_per_s": round(allowed, 1),
                "achieved_pct": round(100.0 * achieved / allowed, 1) if allowed else None,
                "achieved_per_bot": per_bot_achieved,
                "min_bot_pct": round(min(100.0 * per_bot_achieved[b] / allowed_per_bot[b]
                                         for b in allowed_per_bot), 1),
                "p50_ms": _lat(s1, "p50"), "p99_ms": _lat(s1, "p99"),
            })
        finally:
            row["stop"] = sut.stop()
    return row


def _distinct_chats(bot_index: int, n_bots: int, users: int, sent: int) -> int:
    """How many different crowd users (= private chats) message bot BOT_INDEX: the crowd sends
    message k to bot k % n_bots from user (k // n_bots) % users."""
    per_bot = max(0, (sent - bot_index + n_bots - 1) // n_bots)
    return min(users, per_bot)
