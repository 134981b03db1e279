"""MetricsExporter: the fleet's one `/metrics` endpoint.

Every actor sends `MetricsReport`s (its `MetricsBuffer`), every supervisor sends
`LifecycleEvent`s and the root pushes `TreeSnapshot`s; they all arrive here as messages, so the
same endpoint serves one process, one process per actor, or several hosts. The exporter is a
leaf actor, the root's first child, because it owns a thread (the HTTP server on its
`LoopThread`) and a process that runs threads must not fork children.

Threads: the actor's context (thespian) updates an `ExportState`; the loop thread serves HTTP
and renders that state under the state's lock at scrape time. Endpoints, on one port:
- `/metrics`  Prometheus text format (OpenMetrics when the scraper asks for it)
- `/healthz`  200 "ok" while the process and its server thread are up
- `/readyz`   200 when the last tree snapshot says every permanent child runs, else 503 with
  the list of children that do not (also 503 before the first snapshot or when snapshots stop)

Counters never go down: the state keeps, per source, an offset that absorbs restarts (a new
`epoch` or `pid` in a report, or a counter lower than before). Sources silent for
`stale_after` seconds (default 300) are dropped so label sets stay bounded; a source whose actor
stopped or crashed loses its gauges at once (its counters stay until it is stale).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import gzip
import json
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from actors.base import FleetActor
from messages.lifecycle import LifecycleEvent, ProbeReply
from messages.metrics import (MetricsEndpoint, MetricsEndpointRequest, MetricsReport,
                              TreeSnapshot)
from system.loopthread import LoopThread
from system.metricdefs import (ACTOR, COUNTER, FAMILIES, GAUGE, HISTOGRAM,
                               MAX_SERIES_PER_FAMILY, reason_label)
from system.metrics_client import PSS_FAMILY, RSS_FAMILY, MetricsBuffer
from system.placement import machine_of

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
STALE_AFTER = 300.0          # seconds without a report before a source is dropped
SNAPSHOT_TIMEOUT = 10.0      # seconds without a TreeSnapshot before /readyz says not ready
STATES = ("starting", "running", "stopping", "stopped", "exited", "failed")
# LifecycleEvent.event -> the state of the actor at that path afterwards
_EVENT_STATE = {"start": "running", "started": "running", "stop": "stopped", "exit": "stopped",
                "crash": "exited", "restart": "starting", "escalation": "failed"}


LEADER_HOST = "(leader)"     # the host label of processes on a leader without a system.host


class _Source:
    """The latest report of one actor, plus the offsets that keep its counters monotonic."""
    __slots__ = ("name", "pid", "epoch", "ts", "received", "counters", "hists", "gauges",
                 "machine", "host")

    def __init__(self, name: str, pid: int, epoch: float):
        self.name, self.pid, self.epoch = name, pid, epoch
        self.machine = ""             # the reporting process's machine (placement.system_id)
        self.host = ""                # ... and its tgfleet.host
        self.ts = 0.0                 # wall time of the latest report
        self.received = 0.0           # monotonic arrival time of the latest report
        self.counters: dict[tuple, list] = {}   # key -> [raw, offset]
        self.hists: dict[tuple, list] = {}      # key -> [counts, sum, count, ocounts, osum, ocount]
        self.gauges: dict[tuple, float] = {}

    def fold(self, same_process: bool):
        """The actor restarted: what it had counted becomes offset, its gauges are gone.
        Per-process counters start over only when the process did."""
        for (name, _), entry in self.counters.items():
            if same_process and FAMILIES[name].per_process:
                continue
            entry[1] += entry[0]
            entry[0] = 0.0
        for h in self.hists.values():
            h[3] = [a + b for a, b in zip(h[3], h[0])]
            h[4] += h[1]
            h[5] += h[2]
            h[0], h[1], h[2] = [0] * len(h[0]), 0.0, 0
        self.gauges = {}


class ExportState:
    """Everything the exporter knows, shared by the actor (writes) and the HTTP thread (reads)
    under one lock. Pure Python with an injectable clock, so it is unit-tested directly."""

    def __init__(self, stale_after: float = STALE_AFTER, snapshot_timeout: float = SNAPSHOT_TIMEOUT,
                 max_series: int = MAX_SERIES_PER_FAMILY, clock=time.monotonic):
        self.lock = threading.Lock()
        self.stale_after = stale_after
        self.snapshot_timeout = snapshot_timeout
        self.max_series = max_series
        self.clock = clock
        self.sources: dict[str, _Source] = {}
        self.retired: dict[tuple, list] = {}     # counters/histograms of dropped sources
        self.own: dict[tuple, float] = {}        # exporter-computed counters
        self.actor_state: dict[str, tuple] = {}  # path -> (state, changed_at monotonic)
        self.snapshot: TreeSnapshot | None = None
        self.snapshot_at = 0.0
        for name in ("tgfleet_metrics_reports_total", "tgfleet_metrics_invalid_samples_total",
                     "tgfleet_metrics_sources_dropped_total", "tgfleet_metrics_scrapes_total"):
            self._own_init(name, ())      # exported from the start, at 0

    # ---- writes (actor context) ------------------------------------------------------------
    def _own_inc(self, family: str, labels: tuple = (), amount: float = 1.0):
        key = (family, labels)
        self.own[key] = self.own.get(key, 0.0) + amount

    def _own_init(self, family: str, labels: tuple):
        self.own.setdefault((family, labels), 0.0)

    @staticmethod
    def _labels(fam, labels) -> tuple | None:
        """The sample's labels in the family's order, or None when the names do not match."""
        names = fam.labels
        try:
            if len(labels) != len(names):
                return None
            if all(pair[0] == n for pair, n in zip(labels, names)):
                return tuple([(n, str(v)) for n, v in labels])
            given = dict(labels)
            if set(given) != set(names):
                return None
            return tuple([(n, str(given[n])) for n in names])
        except (TypeError, ValueError, IndexError):
            return None

    def ingest(self, report: MetricsReport) -> int:
        """Keep `report` as its source's latest; returns how many samples were invalid."""
        now = self.clock()
        invalid = 0
        with self.lock:
            self._own_inc("tgfleet_metrics_reports_total")
            src = self.sources.get(report.source)
            if src is None:
                src = self.sources[report.source] = _Source(report.source, report.pid,
                                                            report.epoch)
            else:
                if report.ts and report.ts < src.ts:
                    return 0   # an older report overtaken by a newer one
                same = report.pid == src.pid and machine_of(report.system) == src.machine
                if not same or (report.epoch and report.epoch != src.epoch):
                    src.fold(same_process=same)
                    src.pid, src.epoch = report.pid, report.epoch
            src.machine, src.host = machine_of(report.system), report.host
            gauges = {}
            for sample in report.samples:
                try:
                    name, labels, value = sample
                    fam = FAMILIES.get(name)
                    if fam is None or fam.origin != ACTOR:
                        raise ValueError(name)
                    labels = self._labels(fam, labels)
                    if labels is None:
                        raise ValueError(name)
                    key = (name, labels)
                    if fam.type == COUNTER:
                        v = float(value)
                        entry = src.counters.get(key)
                        if entry is None:
                            src.counters[key] = [v, 0.0]
                        else:
                            if v < entry[0]:        # went down: the actor started over
                                entry[1] += entry[0]
                            entry[0] = v
                    elif fam.type == GAUGE:
                        gauges[key] = float(value)
                    else:
                        counts, total, count = value
                        counts = [int(c) for c in counts]
                        if len(counts) != len(fam.buckets) + 1:
                            raise ValueError(name)
                        total, count = float(total), int(count)
                        h = src.hists.get(key)
                        if h is None:
                            src.hists[key] = [counts, total, count, [0] * len(counts), 0.0, 0]
                        else:
                            if count < h[2]:
                                h[3] = [a + b for a, b in zip(h[3], h[0])]
                                h[4] += h[1]
                                h[5] += h[2]
                            h[0], h[1], h[2] = counts, total, count
                except (TypeError, ValueError):
                    invalid += 1
            src.gauges = gauges
            src.ts = report.ts or time.time()
            src.received = now
            if invalid:
                self._own_inc("tgfleet_metrics_invalid_samples_total", (), invalid)
        return invalid

    def lifecycle(self, ev: LifecycleEvent) -> None:
        now = self.clock()
        path = ev.path
        actor = (("actor", path),)
        with self.lock:
            self._own_inc("tgfleet_lifecycle_events_total", (("event", ev.event),))
            if ev.event == "restart":
                self._own_inc("tgfleet_restarts_total",
                              (("actor", path), ("reason", reason_label(ev.reason))))
            elif ev.event == "crash":
                self._own_inc("tgfleet_crashes_total",
                              (("actor", path), ("reason", reason_label(ev.reason))))
            elif ev.event == "escalation":
                self._own_inc("tgfleet_escalations_total", actor)
            elif ev.event == "start":
                # a supervisor that started: its escalation count exists from now on, at 0
                self._own_init("tgfleet_escalations_total", actor)
            if ev.event in ("start", "started"):
                self._own_init("tgfleet_restarts_total", (("actor", path), ("reason", "crash")))
            state = _EVENT_STATE.get(ev.event)
            if state is not None:
                self.actor_state[path] = (state, now)
            if ev.event in ("stop", "exit", "crash", "escalation"):
                prefix = path + "/"
                for src in self.sources.values():
                    if (src.name == path or src.name.startswith(prefix)) and src.ts <= ev.ts:
                        src.gauges = {}

    def tree(self, snap: TreeSnapshot) -> None:
        now = self.clock()
        with self.lock:
            self.snapshot = snap
            self.snapshot_at = now
            for row in snap.rows:
                self.actor_state[row.path] = (row.state, now)

    def sweep(self) -> int:
        """Drop sources silent for `stale_after`; returns how many were dropped."""
        now = self.clock()
        with self.lock:
            stale = [name for name, s in self.sources.items()
                     if now - s.received > self.stale_after]
            if not stale:
                return 0
            gone = [self.sources.pop(name) for name in stale]
            live_keys = set()
            for s in self.sources.values():
                live_keys.update(s.counters)
                live_keys.update(s.hists)
            for s in gone:
                # a series another live source still reports keeps what the dropped one counted
                for key, (raw, off) in s.counters.items():
                    if key in live_keys:
                        r = self.retired.setdefault(key, [0.0])
                        r[0] += raw + off
                for key, h in s.hists.items():
                    if key in live_keys:
                        r = self.retired.setdefault(key, [[0] * len(h[0]), 0.0, 0])
                        r[0] = [a + b + c for a, b, c in zip(r[0], h[0], h[3])]
                        r[1] += h[1] + h[4]
                        r[2] += h[2] + h[5]
            for key in [k for k in self.retired if k not in live_keys]:
                del self.retired[key]
            for path in [p for p, (st, at) in self.actor_state.items()
                         if st != "running" and now - at > self.stale_after]:
                del self.actor_state[path]
            self._own_inc("tgfleet_metrics_sources_dropped_total", (), len(gone))
            return len(gone)

    def count_scrape(self) -> None:
        with self.lock:
            self._own_inc("tgfleet_metrics_scrapes_total")

    # ---- reads (HTTP thread) ---------------------------------------------------------------
    def _readiness(self, now: float) -> tuple[bool, list[str]]:
        snap = self.snapshot
        if snap is None:
            return False, ["no tree snapshot received yet"]
        age = now - self.snapshot_at
        if age > self.snapshot_timeout:
            return False, [f"the last tree snapshot is {age:.0f}s old"]
        if snap.ready:
            return True, []
        down = list(snap.not_ready) or [r.path for r in snap.rows if r.state != "running"]
        states = {r.path: r.state for r in snap.rows}
        return False, [f"{p} {states.get(p, 'unknown')}" for p in down]

    def readiness(self) -> tuple[bool, list[str]]:
        """(ready, the lines explaining why not)."""
        with self.lock:
            return self._readiness(self.clock())

    def values(self) -> dict[str, dict[tuple, object]]:
        """Every exported series now: family -> {labels: value}, where a histogram's value is
        `(cumulative_bucket_counts, sum, count)`. What `/metrics` renders."""
        now = self.clock()
        out: dict[str, dict] = {name: {} for name in FAMILIES}
        over: collections.Counter = collections.Counter()
        cap = self.max_series

        def put(name, labels, value, merge="sum"):
            series = out[name]
            old = series.get(labels)
            if old is None:
                if len(series) >= cap:
                    over[name] += 1
                    return
                series[labels] = value
            elif merge == "sum":
                series[labels] = old + value
            elif merge == "max":
                series[labels] = max(old, value)
            else:
                series[labels] = min(old, value)

        def put_hist(name, labels, counts, total, count):
            series = out[name]
            old = series.get(labels)
            if old is None:
                if len(series) >= cap:
                    over[name] += 1
                    return
                series[labels] = [list(counts), total, count]
            else:
                old[0] = [a + b for a, b in zip(old[0], counts)]
                old[1] += total
                old[2] += count

        with self.lock:
            # one entry per process: (machine, pid), since pids repeat across hosts
            rss_by_pid: dict[tuple, tuple] = {}
            pss_by_pid: dict[tuple, tuple] = {}
            for src in self.sources.values():
                for (name, labels), (raw, off) in src.counters.items():
                    put(name, labels, raw + off)
                for (name, labels), h in src.hists.items():
                    put_hist(name, labels, [a + b for a, b in zip(h[0], h[3])], h[1] + h[4],
                             h[2] + h[5])
                elapsed = max(0.0, now - src.received)
                for (name, labels), v in src.gauges.items():
                    fam = FAMILIES[name]
                    put(name, labels, v + elapsed if fam.ages else v, fam.merge)
                    if name == RSS_FAMILY or name == PSS_FAMILY:
                        per = rss_by_pid if name == RSS_FAMILY else pss_by_pid
                        proc = (src.machine, src.pid)
                        prev = per.get(proc)
                        if prev is None or prev[0] < src.received:
                            per[proc] = (src.received, v, src.host)
            for (name, labels), r in self.retired.items():
                if FAMILIES[name].type == HISTOGRAM:
                    put_hist(name, labels, r[0], r[1], r[2])
                else:
                    put(name, labels, r[0])
            for (name, labels), v in self.own.items():
                put(name, labels, v)
            snap = self.snapshot
            ready, _ = self._readiness(now)
            actor_state = dict(self.actor_state)
            n_sources = len(self.sources)

        put("tgfleet_fleet_resident_memory_bytes", (), float(sum(v for _, v, _ in
                                                                  rss_by_pid.values())))
        if pss_by_pid:
            put("tgfleet_fleet_proportional_memory_bytes", (),
                float(sum(v for _, v, _ in pss_by_pid.values())))
        by_host: dict[str, float] = {}
        for _, v, host in rss_by_pid.values():
            by_host[host or LEADER_HOST] = by_host.get(host or LEADER_HOST, 0.0) + v
        for host, v in by_host.items():
            put("tgfleet_host_resident_memory_bytes", (("host", host),), v)
        put("tgfleet_fleet_processes", (), float(len(rss_by_pid)))
        put("tgfleet_metrics_sources", (), float(n_sources))
        put("tgfleet_ready", (), 1.0 if ready else 0.0)
        for path, (state, _) in actor_state.items():
            put("tgfleet_actor_up", (("actor", path),), 1.0 if state == "running" else 0.0)
        if snap is not None:
            by = collections.Counter((r.kind, r.state) for r in snap.rows)
            for kind in sorted({r.kind for r in snap.rows}):
                seen = {s for k, s in by if k == kind}
                for state in STATES + tuple(sorted(seen - set(STATES))):
                    put("tgfleet_actors", (("kind", kind), ("state", state)),
                        float(by.get((kind, state), 0)))
        for name, n in over.items():
            put("tgfleet_metrics_series_over_limit", (("family", name),), float(n))
        # histograms: per-bucket counts -> Prometheus' cumulative `le` buckets
        for name, fam in FAMILIES.items():
            if fam.type != HISTOGRAM:
                continue
            for labels, (counts, total, count) in out[name].items():
                cum, acc = [], 0
                for c in counts:
                    acc += c
                    cum.append(acc)
                out[name][labels] = (tuple(cum), total, count)
        return out

    def families(self) -> list:
        """The prometheus_client metric families for one scrape."""
        result = []
        for name, series in self.values().items():
            fam = FAMILIES[name]
            names = list(fam.labels)
            if fam.type == COUNTER:
                mf = CounterMetricFamily(name, fam.help, labels=names)
                for labels, v in sorted(series.items()):
                    mf.add_metric([v for _, v in labels], v)
            elif fam.type == GAUGE:
                mf = GaugeMetricFamily(name, fam.help, labels=names)
                for labels, v in sorted(series.items()):
                    mf.add_metric([v for _, v in labels], v)
            else:
                mf = HistogramMetricFamily(name, fam.help, labels=names)
                les = [floatToGoString(b) for b in fam.buckets] + ["+Inf"]
                for labels, (cum, total, _count) in sorted(series.items()):
                    mf.add_metric([v for _, v in labels], list(zip(les, cum)), total)
            result.append(mf)
        return result


class StateCollector:
    """A prometheus_client collector that renders an ExportState at scrape time."""

    def __init__(self, state: ExportState):
        self.state = state

    def collect(self):
        return self.state.families()

    def describe(self):
        return []


class HttpApp:
    """Routes one HTTP request to (status, content type, body); no sockets, so it is testable."""

    def __init__(self, state: ExportState):
        self.state = state
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StateCollector(state))

    def route(self, method: str, path: str, headers: dict) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"method not allowed\n"
        if path == "/metrics":
            self.state.count_scrape()
            encoder, ctype = choose_encoder(headers.get("accept", ""))
            return 200, ctype, encoder(self.registry)
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            ready, why = self.state.readiness()
            if ready:
                return 200, "text/plain; charset=utf-8", b"ready\n"
            body = "not ready:\n" + "".join(f"{line}\n" for line in why)
            return 503, "text/plain; charset=utf-8", body.encode()
        if path == "/":
            return 200, "text/plain; charset=utf-8", b"tgfleet: /metrics /healthz /readyz\n"
        return 404, "text/plain; charset=utf-8", b"not found\n"


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}


class MetricsExporter(FleetActor):
    """Args: host (127.0.0.1), port (9464; 0 = a free port), endpoint_file (optional path: the
    actual endpoint is written there as JSON {"host", "port", "url", "pid"}), stale_after
    (300 s), snapshot_timeout (10 s), tick (1 s: own process metrics and the stale sweep)."""

    kind = "metrics"
    state: ExportState | None = None     # set by on_start; messages before it are dropped

    def on_start(self, args):
        self.host = str(args.get("host", DEFAULT_HOST))
        port = int(args.get("port", DEFAULT_PORT))
        self.endpoint_file = args.get("endpoint_file") or ""
        self.state = ExportState(stale_after=float(args.get("stale_after", STALE_AFTER)),
                                 snapshot_timeout=float(args.get("snapshot_timeout",
                                                                 SNAPSHOT_TIMEOUT)))
        self.app = HttpApp(self.state)
        self.metrics = MetricsBuffer(self.path or "metrics")
        self.server = None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # Bound here, in the actor's context: a busy port fails the start (the supervisor
        # retries with backoff) and port 0 is resolved before Started goes out.
        self.sock = socket.create_server((self.host, port), family=family, backlog=128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.open_bridge()
        self.loop = LoopThread(f"metrics-{self.port}")
        self.loop.submit_to(self._serve(), self.bridge, "server")
        if self.endpoint_file:
            self._write_endpoint_file()
        self.every("tick", float(args.get("tick", 5.0)))
        self.state.ingest(self.metrics.report())

    def report_started(self):
        super().report_started()
        self.send(self.parent, MetricsEndpoint(self.host, self.port))

    def _write_endpoint_file(self):
        data = {"host": self.host, "port": self.port, "pid": os.getpid(),
                "url": f"http://{self.host}:{self.port}/metrics"}
        tmp = f"{self.endpoint_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
            fh.write("\n")
        os.replace(tmp, self.endpoint_file)

    # ---- messages -----------------------------------------------------------------------
    def on_MetricsReport(self, msg: MetricsReport, sender):
        if self.state is not None:
            self.state.ingest(msg)

    def on_LifecycleEvent(self, msg: LifecycleEvent, sender):
        if self.state is not None:
            self.state.lifecycle(msg)

    def on_TreeSnapshot(self, msg: TreeSnapshot, sender):
        if self.state is not None:
            self.state.tree(msg)

    def on_MetricsEndpointRequest(self, msg: MetricsEndpointRequest, sender):
        if self.state is not None:
            self.send(sender, MetricsEndpoint(self.host, self.port))

    def on_timer(self, name):
        if name == "tick":
            self.state.ingest(self.metrics.report())
            self.state.sweep()

    def on_probe(self, msg, sender):
        """Healthy only when the HTTP thread answers too."""
        loop = getattr(self, "loop", None)
        if loop is not None and loop.alive:
            loop.submit_to(asyncio.sleep(0), self.bridge, ("probe", msg.seq, sender))

    def on_bridge(self, item):
        tag, fut = item
        if tag == "server":
            exc = fut.exception() if not fut.cancelled() else None
            if exc is not None:
                raise RuntimeError(f"metrics HTTP server failed: {exc!r}") from exc
        elif isinstance(tag, tuple) and tag[0] == "probe":
            self.send(tag[2], ProbeReply(self.child_id, tag[1], True))

    def on_stop(self):
        loop = getattr(self, "loop", None)
        if loop is not None:
            if loop.alive:
                fut = loop.submit(self._close())
                try:
                    fut.result(2.0)
                except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                    self.log.warning("%s: the HTTP server did not close in time", self.path)
                except OSError as exc:
                    self.log.warning("%s: closing the HTTP server: %s", self.path, exc)
            loop.stop(3.0)
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()
        if getattr(self, "endpoint_file", ""):
            self._remove_endpoint_file()

    def _remove_endpoint_file(self):
        try:
            with open(self.endpoint_file) as fh:
                mine = json.load(fh).get("pid") == os.getpid()
        except (OSError, ValueError):
            return
        if mine:
            try:
                os.unlink(self.endpoint_file)
            except FileNotFoundError:
                pass  # removed by someone else meanwhile: nothing to do

    # ---- the HTTP server (loop thread) ----------------------------------------------------
    async def _serve(self):
        self.server = await asyncio.start_server(self._client, sock=self.sock)

    async def _close(self):
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                self.log.warning("%s: clients still connected at stop", self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if len(parts) != 3:
                status, ctype, body = 400, "text/plain; charset=utf-8", b"bad request\n"
                method = "GET"
            else:
                method = parts[0].upper()
                try:
                    status, ctype, body = self.app.route(method, urlsplit(parts[1]).path,
                                                         headers)
                except Exception:
                    self.log.exception("%s: error while serving %s", self.path, parts[1])
                    status, ctype, body = 500, "text/plain; charset=utf-8", b"internal error\n"
            extra = ""
            if len(body) > 1024 and "gzip" in headers.get("accept-encoding", ""):
                body = gzip.compress(body, compresslevel=5)
                extra = "Content-Encoding: gzip\r\n"
            head_out = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
                        "Connection: close\r\n\r\n").encode("latin-1")
            writer.write(head_out if method == "HEAD" else head_out + body)
            await writer.drain()
        except ConnectionError:
            pass  # the client went away; nothing to answer
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass  # already reset by the client
