"""`ops/soak`: run the demo-like fleet for a while and watch its memory; fail if it keeps growing.

    ops/soak [--minutes 10] [--interval 60] [--base inprocess|processes] [--crowd-rate 20] ...

What runs: `python -m system.cli run --config FILE` with the embedded local Telegram and its demo
fleet (10 bots, Telethon and Pyrogram, echo/autoreply/forward handlers, a crowd of simulated
users, flood limits on — the same as `ops/run` without a config, on free ports and a temporary
data directory). Every --interval seconds: RSS and PSS summed over every process of tgfleet
(launcher, and on the processes base thespian's admin, logger and actor processes; the local
Telegram is sampled separately and not counted), plus the crowd's sent/answered counters.

Verdict ("growing" -> exit 1): after the warm-up (--warmup-minutes, default 20% of the run,
at least one interval), a least-squares line through the post-warm-up PSS samples rises faster
than --slope-pct (default 2) percent of their mean per 10 minutes, AND the last sample is more
than --margin-pct (default 10) percent above the largest warm-up sample. Both must hold: a one-off
step (a cache filling up) or a slow wobble is not a leak. JSON: bench/results/soak-<time>.json and
bench/results/soak-latest.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from bench import harness
from system.boot import free_port
from system.localtg.control import ControlClient

log = logging.getLogger("bench.soak")


def linear_fit(xs, ys) -> tuple[float, float]:
    """Least-squares slope and intercept of ys over xs."""
    n = len(xs)
    if n < 2:
        return 0.0, (ys[0] if ys else 0.0)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def verdict(samples: list[dict], warmup_s: float, slope_pct: float, margin_pct: float,
            key: str = "pss_mb") -> dict:
    """Is memory (KEY) still growing after the warm-up? See the module doc for the rule."""
    warm = [s for s in samples if s["t_s"] < warmup_s]
    post = [s for s in samples if s["t_s"] >= warmup_s]
    out = {"key": key, "warmup_s": warmup_s, "warmup_samples": len(warm), "post_samples": len(post)}
    if len(post) < 2 or not warm:
        out.update({"growing": False, "reason": "too few samples to judge (need >= 1 warm-up and "
                    ">= 2 post-warm-up samples)"})
        return out
    xs = [s["t_s"] for s in post]
    ys = [s[key] for s in post]
    slope, _ = linear_fit(xs, ys)
    mean = sum(ys) / len(ys)
    pct_per_10min = 100.0 * slope * 600.0 / mean if mean else 0.0
    warm_max = max(s[key] for s in warm)
    last = ys[-1]
    over_pct = 100.0 * (last - warm_max) / warm_max if warm_max else 0.0
    growing = pct_per_10min > slope_pct and over_pct > margin_pct
    out.update({
        "slope_mb_per_10min": round(slope * 600.0, 2), "slope_pct_per_10min": round(pct_per_10min, 2),
        "slope_threshold_pct": slope_pct, "post_mean_mb": round(mean, 1), "warmup_max_mb": warm_max,
        "last_mb": last, "last_over_warmup_max_pct": round(over_pct, 1), "margin_pct": margin_pct,
        "growing": growing,
        "reason": ("PSS keeps growing: slope %.1f%%/10 min > %.1f%% and the last sample is %.1f%% "
                   "above the warm-up max (> %.0f%%)" % (pct_per_10min, slope_pct, over_pct, margin_pct))
        if growing else ("stable: slope %.1f%%/10 min (threshold %.1f%%), last sample %+.1f%% vs "
                         "the warm-up max (margin %.0f%%)" % (pct_per_10min, slope_pct, over_pct,
                                                              margin_pct)),
    })
    return out


def write_config(workdir: Path, args) -> Path:
    data_dir = workdir / "var"
    cfg = f"""
[system]
base = "{args.base}"
admin_port = {free_port()}
data_dir = "{data_dir}"

[control]
port = {free_port()}

[metrics]
port = {free_port()}

[log]
level = "WARNING"

[localtg]
enabled = true
demo_bots = {args.bots}
crowd_users = {args.crowd_users}
crowd_rate = {float(args.crowd_rate)}
"""
    path = workdir / "soak.toml"
    path.write_text(cfg)
    return path


CONTROL_LINE = re.compile(r"local Telegram: MTProto 127\.0\.0\.1:(\d+), control 127\.0\.0\.1:(\d+)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ops/soak", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[4:]))
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    p.add_argument("--warmup-minutes", type=float, default=None,
                   help="default: 20%% of --minutes, at least one interval")
    p.add_argument("--base", choices=["inprocess", "processes"], default="inprocess")
    p.add_argument("--bots", type=int, default=10)
    p.add_argument("--crowd-users", type=int, default=20)
    p.add_argument("--crowd-rate", type=float, default=20.0, help="crowd msg/s over all bots")
    p.add_argument("--slope-pct", type=float, default=2.0)
    p.add_argument("--margin-pct", type=float, default=10.0)
    p.add_argument("--out-dir", default=str(harness.REPO_ROOT / "bench" / "results"))
    p.add_argument("--keep-workdir", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    harness.install_signal_handlers()
    warmup_s = (args.warmup_minutes * 60.0 if args.warmup_minutes is not None
                else max(args.interval, 0.2 * args.minutes * 60.0))
    workdir = Path(tempfile.mkdtemp(prefix="tgfleet-soak-"))
    config = write_config(workdir, args)
    harness.track_cmdline(str(config))
    harness.track_cmdline(str(workdir / "var"))       # the embedded local Telegram's --data-dir
    log_path = workdir / "soak.log"
    result = {"benchmark": "soak", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": "ops/soak " + " ".join(argv if argv is not None else sys.argv[1:]),
              "options": vars(args) | {"warmup_s": warmup_s}, "samples": [],
              "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}}
    proc = None
    code = 0
    interrupted = False
    try:
        proc = harness.spawn([harness.python(), "-m", "system.cli", "run", "--config", str(config)],
                             log_path)
        n = args.bots
        if harness.wait_for_line(log_path, "crowd:", proc, 120.0 + n) is None:
            raise RuntimeError(f"the fleet did not reach '{n} of {n} bots running' + crowd in time:\n"
                               f"{harness.tail(log_path)}")
        m = CONTROL_LINE.search(log_path.read_text(errors="replace"))
        control = ControlClient("127.0.0.1", int(m.group(2))) if m else None
        t0 = time.monotonic()
        end = t0 + args.minutes * 60.0
        k = 0
        while True:
            target = t0 + k * args.interval
            if target > end + 0.001:
                break
            while time.monotonic() < target:
                if proc.poll() is not None:
                    raise RuntimeError(f"the fleet exited ({proc.returncode}) during the soak:\n"
                                       f"{harness.tail(log_path)}")
                time.sleep(min(1.0, max(0.0, target - time.monotonic())))
            procs = harness.sut_processes(proc.pid, exclude_cmd=("system.localtg",),
                                          also=harness.processes_matching(str(config)))
            mem = harness.memory(procs)
            server = harness.memory(harness.processes_matching("system.localtg --data-dir " + str(workdir)))
            sample = {"t_s": round(time.monotonic() - t0, 1), "rss_mb": mem["rss_mb"],
                      "pss_mb": mem["pss_mb"], "processes": mem["processes"],
                      "localtg_rss_mb": server["rss_mb"]}
            if control is not None:
                try:
                    cs = control.crowd_stats()
                    sample.update({"crowd_sent": cs["sent"], "crowd_answered": cs["answered"]})
                except Exception as exc:   # a sample without crowd numbers is still a sample
                    sample["crowd_error"] = str(exc)
            result["samples"].append(sample)
            log.info("t=%5.0fs  RSS %7.1f MB  PSS %7.1f MB  (%d processes)  crowd %s/%s",
                     sample["t_s"], sample["rss_mb"], sample["pss_mb"], sample["processes"],
                     sample.get("crowd_answered"), sample.get("crowd_sent"))
            k += 1
        if control is not None:
            control.close()
    except KeyboardInterrupt:
        interrupted = True
        code = 130
    except RuntimeError as exc:
        log.error("%s", exc)
        result["error"] = str(exc)
        code = 2
    finally:
        if proc is not None:
            t = time.monotonic()
            result["stop"] = {"exit_code": harness.terminate(proc, 30.0),
                              "stop_s": round(time.monotonic() - t, 2)}
        harness.cleanup_all()
        result["leftover_processes"] = harness.kill_leftovers()
    result["interrupted"] = interrupted
    result["verdict"] = verdict(result["samples"], warmup_s, args.slope_pct, args.margin_pct)
    result["verdict_rss"] = verdict(result["samples"], warmup_s, args.slope_pct, args.margin_pct,
                                    key="rss_mb")
    result["machine"]["loadavg_end"] = os.getloadavg()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("soak-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    path.write_text(json.dumps(result, indent=1))
    (out / "soak-latest.json").write_text(json.dumps(result, indent=1))
    v = result["verdict"]
    print("\nsoak: %s base, %d bots, %.1f min, %d samples -> %s" % (
        args.base, args.bots, args.minutes, len(result["samples"]),
        "GROWING (FAIL)" if v["growing"] else "OK"))
    print("  PSS: " + v["reason"])
    print("  RSS: " + result["verdict_rss"]["reason"])
    print(f"wrote {path}")
    if args.keep_workdir or code:
        print(f"work directory (config, fleet log): {workdir}")
    else:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    if result["leftover_processes"]:
        print(f"WARNING: leftover processes were found and killed: {result['leftover_processes']}")
    if code:
        return code
    return 1 if v["growing"] else 0


if __name__ == "__main__":
    sys.exit(main())
