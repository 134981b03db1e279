"""The metrics side every actor uses: count locally, report as a message.

```python
self.metrics = MetricsBuffer(self.path)                    # in on_start
self.metrics.inc("tgfleet_bot_updates_total", bot="alpha")
self.metrics.set("tgfleet_bot_queue_depth", len(q), bot="alpha")
self.metrics.observe("tgfleet_e2e_latency_seconds", 0.042, bot="alpha")
self.metrics.schedule(self)                                # the "metrics" timer; then in
self.metrics.tick(self)                                    # on_timer("metrics"): report
```
A buffer lives in one actor and is used from that actor's context only (no lock). Counters and
histograms are cumulative since the buffer was created; `report()` snapshots everything plus this
process's resident memory and CPU seconds (`tgfleet_process_*{actor=<source>}`). Families and
label names are checked against `system.metricdefs`: a typo raises ValueError where it is made.

An actor whose numbers stand still reports every IDLE_REPORT_S, not every REPORT_INTERVAL, and
its timer fires that seldom too; its first change brings the timer back to REPORT_INTERVAL
(`tick`). Why: on the in-process base every actor's timer runs on the one runner thread, and a
quiet 50-bot fleet spent ~10 ms of every second there (bench/RESULTS.md, eighteenth session),
mostly on timers that found nothing to report; a message that arrives while the runner is busy
waits for it.
"""
from __future__ import annotations

import bisect
import logging
import math
import os
import time
from contextlib import contextmanager

import psutil

from messages.metrics import MetricsReport, TreeSnapshot
from system import placement
from system.metricdefs import ACTOR, COUNTER, FAMILIES, GAUGE, HISTOGRAM

log = logging.getLogger("tgfleet.metrics")

REPORT_INTERVAL = 2.0        # seconds between reports an actor is expected to send
RSS_FAMILY = "tgfleet_process_resident_memory_bytes"
PSS_FAMILY = "tgfleet_process_proportional_memory_bytes"
CPU_FAMILY = "tgfleet_process_cpu_seconds_total"


def _family(name: str, *types: str):
    fam = FAMILIES.get(name)
    if fam is None:
        raise ValueError(f"unknown metric family {name!r} (declare it in system/metricdefs.py)")
    if fam.origin != ACTOR:
        raise ValueError(f"{name} is computed by the exporter; actors do not report it")
    if fam.type not in types:
        raise ValueError(f"{name} is a {fam.type}; this call is for {' or '.join(types)}")
    return fam


class MetricsBuffer:
    """Counters, gauges and histograms of one actor, reported as one `MetricsReport`."""

    def __init__(self, source: str, process: bool = True):
        self.source = source
        self.epoch = time.time()
        self._scalars: dict[tuple, float] = {}   # (family, labels) -> value
        self._hists: dict[tuple, list] = {}      # (family, labels) -> [counts, sum, count]
        self._process = process
        self._proc: psutil.Process | None = None
        self._proc_pid = 0
        self._dirty = True           # something changed since the last report
        self._last_sent = 0.0
        # (actor, timer) while that report timer runs at IDLE_REPORT_S: the next change sets
        # it back to REPORT_INTERVAL (see tick)
        self._slowed = None
        self._proc_labels = (("actor", source),)

    # ---- recording -------------------------------------------------------------------------
    def inc(self, family: str, amount: float = 1.0, **labels) -> None:
        """Add `amount` to a counter (amount >= 0) or a gauge (any sign)."""
        fam = _family(family, COUNTER, GAUGE)
        if amount < 0 and fam.type == COUNTER:
            raise ValueError(f"{family}: a counter only goes up (amount={amount})")
        key = (family, fam.key(labels))
        scalars = self._scalars
        old = scalars.get(key)
        scalars[key] = (old or 0.0) + amount
        if amount or old is None:
            self._moved()

    def dec(self, family: str, amount: float = 1.0, **labels) -> None:
        """Subtract `amount` from a gauge."""
        _family(family, GAUGE)
        self.inc(family, -amount, **labels)

    def set(self, family: str, value: float, **labels) -> None:
        """Set a gauge; or a counter to a cumulative count kept elsewhere (it must not go down
        while this actor lives)."""
        fam = _family(family, GAUGE, COUNTER)
        value = float(value)
        if fam.type == COUNTER and value < 0:
            raise ValueError(f"{family}: a counter cannot be negative ({value})")
        key = (family, fam.key(labels))
        old = self._scalars.get(key)
        if old != value:
            self._scalars[key] = value
            # An age (fam.ages) grows by itself: the exporter ages it between reports.
            if old is None or not fam.ages:
                self._moved()

    def observe(self, family: str, value: float, **labels) -> None:
        """Record one observation in a histogram (in the family's base unit)."""
        fam = _family(family, HISTOGRAM)
        value = float(value)
        if math.isnan(value):
            raise ValueError(f"{family}: cannot observe NaN")
        key = (family, fam.key(labels))
        h = self._hists.get(key)
        if h is None:
            h = self._hists[key] = [[0] * (len(fam.buckets) + 1), 0.0, 0]
        h[0][bisect.bisect_left(fam.buckets, value)] += 1
        h[1] += value
        h[2] += 1
        self._moved()

    @contextmanager
    def time(self, family: str, **labels):
        """`with buf.time("tgfleet_store_write_seconds"):` observes the block's duration."""
        _family(family, HISTOGRAM)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe(family, time.perf_counter() - t0, **labels)

    def remove(self, family: str, **labels) -> None:
        """Forget one series (e.g. the gauges of a bot that was removed)."""
        fam = FAMILIES.get(family)
        if fam is None:
            raise ValueError(f"unknown metric family {family!r}")
        key = (family, fam.key(labels))
        if self._scalars.pop(key, None) is not None or self._hists.pop(key, None) is not None:
            self._moved()

    def _moved(self) -> None:
        self._dirty = True
        if self._slowed is not None:
            actor, timer = self._slowed
            self._slowed = None
            actor.every(timer, REPORT_INTERVAL)

    def get(self, family: str, **labels):
        """Current value of a series: a float, `(bucket_counts, sum, count)`, or None."""
        fam = FAMILIES.get(family)
        if fam is None:
            raise ValueError(f"unknown metric family {family!r}")
        key = (family, fam.key(labels))
        if fam.type == HISTOGRAM:
            h = self._hists.get(key)
            return None if h is None else (tuple(h[0]), h[1], h[2])
        return self._scalars.get(key)

    # ---- reporting -------------------------------------------------------------------------
    def process_samples(self) -> list:
        """RSS and PSS bytes and CPU seconds of the process this buffer is used in. Read at most
        once per PROCESS_SAMPLE_S per process (PSS once per PSS_SAMPLE_S): on the in-process
        base every actor reports for the same process, and reading /proc for each of them cost
        a few percent of a busy fleet."""
        if not self._process:
            return []
        pid = os.getpid()
        global _process_sample
        now = time.monotonic()
        cached = _process_sample
        if cached is not None and cached[0] == pid and now - cached[1] < PROCESS_SAMPLE_S:
            rss, cpu_s, pss = cached[2], cached[3], cached[4]
        else:
            try:
                if self._proc is None or self._proc_pid != pid:
                    self._proc, self._proc_pid = psutil.Process(pid), pid
                rss = float(self._proc.memory_info().rss)
                cpu = self._proc.cpu_times()
            except psutil.Error as exc:
                log.warning("%s: cannot read process metrics: %s", self.source, exc)
                return []
            cpu_s = float(cpu.user + cpu.system)
            pss = cached[4] if cached is not None and cached[0] == pid else None
            pss_at = cached[5] if cached is not None and cached[0] == pid else -PSS_SAMPLE_S
            if now - pss_at >= PSS_SAMPLE_S:
                pss, pss_at = proportional_memory(), now
            _process_sample = (pid, now, rss, cpu_s, pss, pss_at)
        out = [(RSS_FAMILY, self._proc_labels, rss), (CPU_FAMILY, self._proc_labels, cpu_s)]
        if pss is not None:
            out.append((PSS_FAMILY, self._proc_labels, pss))
        return out

    def report(self) -> MetricsReport:
        samples = [(fam, labels, value) for (fam, labels), value in self._scalars.items()]
        samples.extend((fam, labels, (tuple(h[0]), h[1], h[2]))
                       for (fam, labels), h in self._hists.items())
        samples.extend(self.process_samples())
        return MetricsReport(self.source, os.getpid(), tuple(samples), self.epoch, time.time(),
                             placement.system_id(), placement.host_name())

    IDLE_REPORT_S = 10.0

    def flush(self, actor, force: bool = False) -> bool:
        """Send `report()` from `actor` to `actor.env["metrics"]`; False when there is none or
        nothing changed. An idle actor reports every IDLE_REPORT_S only (for its RSS/CPU), so a
        quiet fleet does not spend its CPU on reporting that nothing happened."""
        addr = getattr(actor, "env", {}).get("metrics")
        if addr is None:
            return False
        now = time.monotonic()
        if not force and not self._dirty and now - self._last_sent < self.IDLE_REPORT_S:
            return False
        self._dirty, self._last_sent = False, now
        actor.send(addr, self.report())
        return True

    def schedule(self, actor, timer: str = "metrics") -> None:
        """(Re)start ACTOR's report timer TIMER (`every`) at REPORT_INTERVAL, e.g. on start or
        for a new exporter; its next report carries everything."""
        self._dirty = True
        self._slowed = None
        actor.every(timer, REPORT_INTERVAL)

    def tick(self, actor, timer: str = "metrics") -> bool:
        """ACTOR's report timer TIMER fired: report what changed, and pace the timer. While
        the numbers move it fires every REPORT_INTERVAL; the first time it finds nothing
        changed it slows to IDLE_REPORT_S, where every tick reports (RSS and CPU), until the
        next change (inc, set, observe, remove) sets it back to REPORT_INTERVAL from then.
        Returns whether a report was sent."""
        if self._dirty or self._slowed is not None:
            return self.flush(actor, force=True)
        self._slowed = (actor, timer)
        actor.every(timer, self.IDLE_REPORT_S)
        return False


# (pid, monotonic time, rss bytes, cpu seconds, pss bytes, when pss was read) of the last /proc
# read in this process; the pid tells a forked child that the sample it inherited is its parent's.
_process_sample = None
PROCESS_SAMPLE_S = 1.0
# The kernel walks every page table to sum PSS: 0.85 ms for a backend (97 MB RSS) against
# 0.03 ms for RSS and CPU. Once a second in each of 41 processes that would be 3.5 % of a core
# under load; every 15 s it is 0.2 %, and memory does not move faster than that.
PSS_SAMPLE_S = 15.0


def proportional_memory() -> float | None:
    """This process's PSS in bytes (/proc/self/smaps_rollup), None where the kernel does not
    say.

    Why beside RSS: the processes base's actor processes share most of their pages (forked from
    one preloaded heap, and merged by the kernel where `system.memory_merge` and the host's
    ksmd allow). RSS counts a shared page in full in every process, so summed over 40 processes
    it says 2.2 GB where the fleet uses ~0.3 GB; PSS gives each process its share."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return float(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        return None
    return None


def tree_snapshot(rows, permanent_paths=None) -> TreeSnapshot:
    """A `TreeSnapshot` from `StatusRow`s: ready when every row (or every row whose path is in
    `permanent_paths`, when given) is running. For the root supervisor's periodic push."""
    not_ready = tuple(r.path for r in rows if r.state != "running"
                      and (permanent_paths is None or r.path in permanent_paths))
    return TreeSnapshot(tuple(rows), not not_ready, not_ready, time.time())
