"""Let the kernel merge identical memory pages across the fleet's processes (Linux KSM).

Why: on the processes base every actor process is a fork of the launcher's preloaded heap.
Python writes to every object it touches (reference counts, and 3.11 specialises bytecode in
place), so each process copies the inherited pages it uses, and about 10 % of a 45 MB heap
copied into 41 processes is most of the fleet's memory (bench/RESULTS.md, eighth session).
Most of those copies are byte for byte the same in every process of a role: the reference
count went back to what it was, the same functions were specialised the same way. The kernel's
same-page merging (KSM) finds such pages and keeps one copy. Measured here (10 bots on the
processes base, 41 processes, idle): 379-387 MB PSS without, 221-245 MB once ksmd had
scanned with 1,000 pages per 20 ms (0.15 cores of ksmd), ~260 MB after two minutes at 200 pages
(0.04 cores); under 1,000 msg/s 294-317 MB against ~395 (bench/RESULTS.md, eleventh session).

Two switches, both needed:
- the process asks for it: `prctl(PR_SET_MEMORY_MERGE)` (Linux 6.4+, no privilege needed)
  marks every present and future anonymous mapping as mergeable, and forked children inherit
  the mark, so setting it in the launcher before thespian forks covers the admin, the logger
  and every actor process. This module does that (`system.memory_merge`).
- the host runs the merging thread: `/sys/kernel/mm/ksm/run = 1` (root; `ops/ksm on`). It is
  a host-wide choice with a CPU cost, so tgfleet never sets it itself; it reports whether it is
  on.

Setting (`system.memory_merge`, env `TGFLEET_SYSTEM_MEMORY_MERGE`):
- "auto" (default): ask on the processes base (the in-process base is one process: little
  to merge), and carry on quietly where the kernel cannot;
- "on": ask on either base; a kernel that refuses is a startup error;
- "off": do not ask.

Security: merged pages are shared between processes that asked for merging, whoever owns them;
timing a write to a merged page tells another such process that it held the same content. On a
host shared with untrusted mergeable processes (other tenants' VMs or services with
`MemoryKSM=yes`) set "off".
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys

SETTINGS = ("auto", "on", "off")
PR_SET_MEMORY_MERGE = 67
PR_GET_MEMORY_MERGE = 68
KSM_DIR = "/sys/kernel/mm/ksm"


class MemoryMergeError(RuntimeError):
    """`system.memory_merge = "on"` and the kernel refused to mark the process mergeable."""


def _prctl(option: int, arg2: int) -> tuple[int, int]:
    """(result, errno) of prctl(OPTION, ARG2, 0, 0, 0); (-1, ENOSYS) off Linux."""
    if not sys.platform.startswith("linux"):
        return -1, errno.ENOSYS
    libc = ctypes.CDLL(None, use_errno=True)
    ctypes.set_errno(0)
    rc = libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(0),
                    ctypes.c_ulong(0), ctypes.c_ulong(0))
    return rc, ctypes.get_errno()


def wanted(setting: str, base: str) -> bool:
    if setting not in SETTINGS:
        raise ValueError(f"expected one of {list(SETTINGS)}, got {setting!r}")
    return setting == "on" or (setting == "auto" and base == "processes")


def enabled() -> bool | None:
    """Whether this process's memory is marked mergeable (None: the kernel cannot tell)."""
    rc, _ = _prctl(PR_GET_MEMORY_MERGE, 0)
    return None if rc < 0 else bool(rc)


def ksm_value(key: str) -> int | None:
    """One of the host's KSM settings or counters (/sys/kernel/mm/ksm/KEY), None if absent."""
    try:
        with open(os.path.join(KSM_DIR, key)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


KSMD_SETTINGS = ("run", "pages_to_scan", "sleep_millisecs")


def ksmd() -> dict:
    """The host's merging thread: {"run": 0|1|2 or None when the kernel has no KSM,
    "pages_to_scan", "sleep_millisecs"}."""
    return {key: ksm_value(key) for key in KSMD_SETTINGS}


def merge_any(pid: int | str = "self") -> bool | None:
    """Whether PID's memory is marked mergeable as a whole (/proc/PID/ksm_stat, Linux 6.7+);
    None where the kernel does not say."""
    try:
        with open(f"/proc/{pid}/ksm_stat") as f:
            for line in f:
                if line.startswith("ksm_merge_any:"):
                    return line.split(":", 1)[1].strip() == "yes"
    except OSError:
        return None
    return None


def apply(setting: str, base: str) -> str:
    """Ask the kernel to merge this process's (and its future children's) identical pages when
    SETTING wants it on BASE. Returns one line for the launcher to print. Raises
    MemoryMergeError when SETTING is "on" and the kernel refuses."""
    if not wanted(setting, base):
        return "memory merge: off"
    rc, err = _prctl(PR_SET_MEMORY_MERGE, 1)
    if rc != 0:
        why = ("this kernel has no per-process KSM (Linux 6.4+)" if err == errno.EINVAL
               else "not Linux" if err == errno.ENOSYS
               else os.strerror(err) if err else f"prctl returned {rc}")
        if setting == "on":
            raise MemoryMergeError(f"system.memory_merge = 'on': the kernel refused: {why}")
        return f"memory merge: not available ({why})"
    k = ksmd()
    if k["run"] == 1:
        return (f"memory merge: on (the host's ksmd scans {k['pages_to_scan']} pages every "
                f"{k['sleep_millisecs']} ms)")
    return ("memory merge: requested, but the host's ksmd is not running, so nothing is merged "
            "(as root: ops/ksm on)")
