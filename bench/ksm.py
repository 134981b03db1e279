"""The host's kernel same-page merging (KSM) during a benchmark: set it up, let a fleet settle,
charge its CPU, put the host back as it was.

Why: tgfleet's processes base marks its processes mergeable (`system/memmerge.py`), but the
merging is done by the kernel's ksmd thread, which is a host-wide setting. A benchmark of the
memory a fleet needs must say whether ksmd ran, at what rate, and what it cost, and must not
leave a shared machine changed.

Modes (`ops/bench --ksm`):
- "on" (default): run ksmd at `--ksm-pages` pages per 20 ms during the measurements (root
  needed; restored at the end). Before a processes fleet is measured, ksmd scans fast
  (`SETTLE_PAGES`) until it has made SETTLE_SCANS full passes since the fleet started: the
  memory of a fleet that has been running a few minutes, not of one started seconds ago.
- "host": leave ksmd as the host has it (no settling).
- "off": the fleet does not ask for merging (`system.memory_merge = "off"`).
ksmd's CPU during each window is added to the measured system's CPU (it is 0 when nothing
mergeable runs: the baselines and the in-process base do not ask for merging).
The host's values are put back when the benchmark ends, is interrupted or gets SIGTERM; a
benchmark killed with SIGKILL leaves ksmd running (`ops/ksm status`, `ops/ksm off`).
"""
from __future__ import annotations

import logging
import os
import time

import psutil

from system import memmerge

log = logging.getLogger("bench.ksm")

MODES = ("on", "host", "off")
SETTLE_PAGES = 2000
SETTLE_SCANS = 3
SETTLE_CAP_S = 150.0


def _write(key: str, value: int) -> None:
    with open(os.path.join(memmerge.KSM_DIR, key), "w") as f:
        f.write(str(int(value)))


class Ksm:
    """The benchmark's hold on ksmd: `start()`, `settle()` per processes fleet, `cpu()` around
    windows, `restore()` at the end (also from the harness's cleanup)."""

    def __init__(self, mode: str, pages: int):
        if mode not in MODES:
            raise ValueError(f"--ksm: expected one of {MODES}, got {mode!r}")
        self.mode = mode
        self.pages = int(pages)
        self.saved: dict | None = None
        self.driving = False          # we set ksmd up and will put it back
        self.note = ""
        self._ksmd = None

    # ---- set up / put back -------------------------------------------------------------
    def start(self) -> str:
        """Set ksmd up for mode "on"; returns one line saying what the run uses."""
        state = memmerge.ksmd()
        if self.mode == "off":
            self.note = "off (the fleet does not ask for merging)"
        elif state["run"] is None:
            self.note = "unavailable (this kernel has no KSM)"
        elif self.mode == "host":
            self.note = (f"as the host has it (run={state['run']}, {state['pages_to_scan']} pages "
                         f"per {state['sleep_millisecs']} ms)")
        else:
            try:
                self.saved = state
                _write("pages_to_scan", self.pages)
                _write("sleep_millisecs", 20)
                _write("run", 1)
                self.driving = True
                self.note = (f"on: ksmd {self.pages} pages per 20 ms during measurements, "
                             f"{SETTLE_PAGES} while a processes fleet settles "
                             f"({SETTLE_SCANS} full scans)")
            except OSError as exc:
                self.saved = None
                self.note = f"unavailable ({exc.strerror}: ksmd is a host setting, root only)"
        log.info("KSM: %s", self.note)
        return self.note

    def restore(self) -> None:
        if not self.driving or self.saved is None:
            return
        for key in ("pages_to_scan", "sleep_millisecs", "run"):
            if self.saved.get(key) is not None:
                try:
                    _write(key, self.saved[key])
                except OSError as exc:
                    log.error("could not restore ksm %s=%s: %s", key, self.saved[key], exc)
        self.driving = False

    # ---- per fleet ---------------------------------------------------------------------
    @property
    def fleet_setting(self) -> str:
        """`system.memory_merge` for tgfleet's config."""
        return "off" if self.mode == "off" else "auto"

    def settle(self, alive=lambda: True) -> dict:
        """Scan fast until SETTLE_SCANS full passes since now (or SETTLE_CAP_S), then go back to
        the measurement rate. {} when not driving ksmd."""
        if not self.driving:
            return {}
        t0 = time.monotonic()
        scans0 = memmerge.ksm_value("full_scans") or 0
        _write("pages_to_scan", SETTLE_PAGES)
        try:
            while time.monotonic() - t0 < SETTLE_CAP_S and alive():
                if (memmerge.ksm_value("full_scans") or 0) - scans0 >= SETTLE_SCANS:
                    break
                time.sleep(0.5)
        finally:
            _write("pages_to_scan", self.pages)
        return {"ksm_settle_s": round(time.monotonic() - t0, 1),
                "ksm_settle_scans": (memmerge.ksm_value("full_scans") or 0) - scans0,
                "ksm_pages_sharing": memmerge.ksm_value("pages_sharing")}

    def cpu(self) -> float:
        """CPU seconds ksmd has used so far (0.0 where it cannot be seen)."""
        try:
            if self._ksmd is None:
                self._ksmd = next(p for p in psutil.process_iter(["name"])
                                  if p.info["name"] == "ksmd")
            t = self._ksmd.cpu_times()
            return t.user + t.system
        except (StopIteration, psutil.Error):
            return 0.0


# The hold of the running benchmark (bench/__main__.py replaces it); "host" does nothing.
HOLD = Ksm("host", 0)
