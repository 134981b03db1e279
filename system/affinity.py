"""CPU affinity: the in-process base runs on one core by default.

Why: on the in-process base every actor and every backend's loop thread share one interpreter
lock. Spread over two cores, each hand-off of that lock between threads (on every socket call
of every loop thread) is a cross-core wake-up: measured here with 10 Telethon bots at
1,400 msg/s offered, the unpinned fleet answered 643/s at 1.45 CPU ms per reply (0.35 ms of it
in the kernel, 2 context switches per reply), the same fleet pinned to one core 1,643/s at
0.60 ms (0.03 ms in the kernel). Only one thread runs Python at a time anyway, so one core
costs nothing but the parallel native work (TDLib's own threads, SQLite): set
`system.cpu_affinity = "none"` for a TDLib-heavy in-process fleet, or name the cores.

Setting (`system.cpu_affinity`, env `TGFLEET_SYSTEM_CPU_AFFINITY`):
- "auto" (default): in-process base on a machine with 2+ usable cores: one core, picked by
  process id (several fleets on one host usually land on different cores; name the cores to
  be sure); processes base: unchanged;
- "none": unchanged (the scheduler decides);
- a list such as "1" or "0,2-3": those cores, on either base (actor processes inherit it).
"""
from __future__ import annotations

import os
import re

_LIST = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")


class AffinityError(ValueError):
    """The setting is malformed or names cores this process may not use."""


def parse(setting: str) -> str | list[int]:
    """'auto', 'none' or the sorted cores of a list like '0,2-3'; AffinityError otherwise."""
    text = setting.strip().lower()
    if text in ("auto", "none"):
        return text
    if not _LIST.match(text):
        raise AffinityError(f"expected 'auto', 'none' or a core list like '1' or '0,2-3', "
                            f"got {setting!r}")
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise AffinityError(f"core range {part!r} runs backwards")
        cpus.update(range(first, last + 1))
    return sorted(cpus)


def choose(setting: str, base: str, available: set[int], pid: int) -> list[int] | None:
    """The cores to pin this process to, or None to leave it as it is."""
    wanted = parse(setting)
    if wanted == "none":
        return None
    if wanted == "auto":
        if base != "inprocess" or len(available) < 2:
            return None
        cpus = sorted(available)
        return [cpus[pid % len(cpus)]]
    missing = [c for c in wanted if c not in available]
    if missing:
        raise AffinityError(f"cores {missing} are not available to this process; it may use "
                            f"{sorted(available)}")
    return wanted


def pin_process(cpus: list[int]) -> int:
    """Pin every thread of this process (Linux affinity is per thread; threads started later
    inherit it from their creator). Returns how many threads were pinned."""
    tids = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir(
        "/proc/self/task") else [0]
    pinned = 0
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
            pinned += 1
        except ProcessLookupError:
            continue      # a thread that ended meanwhile
    return pinned


def apply(setting: str, base: str) -> list[int] | None:
    """Choose and apply; the cores used (None: left to the scheduler)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = choose(setting, base, set(os.sched_getaffinity(0)), os.getpid())
    if cpus is not None:
        pin_process(cpus)
    return cpus
