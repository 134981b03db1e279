"""Metrics conversation: every actor -> the root's MetricsExporter.

Metrics travel as messages, so one `/metrics` endpoint serves the whole fleet on every base (one
process, one process per actor, several hosts). An actor keeps its numbers in a
`system.metrics_client.MetricsBuffer` and sends `buffer.report()` now and then (about once a
second); the exporter keeps the latest report of every source and renders them at scrape time.

Sample shapes inside `MetricsReport.samples` (families are defined in `system.metricdefs`):
- counter / gauge:  `(family, labels, value: float)`
- histogram:        `(family, labels, (bucket_counts, sum, count))` where `bucket_counts` is a
  tuple of ints of length `len(family.buckets) + 1`: how many observations fell into each
  bucket, NOT cumulative (index i counts values in `(buckets[i-1], buckets[i]]`, the last entry
  counts values above the largest bound); `sum` is a float and `count` an int. The exporter turns
  them into Prometheus' cumulative `le` buckets.
`labels` is a tuple of `(name, value)` string pairs in the family's label order.
All counter and histogram values are cumulative since the reporting actor started: the exporter
keeps an offset per source so a restarted actor (new `epoch` or new `pid`, or a counter that went
down) never makes an exported counter decrease.
"""
from __future__ import annotations

from dataclasses import dataclass
from messages import fastpickle


@dataclass(frozen=True, slots=True)
class MetricsReport:
    source: str                   # actor path, e.g. "root/bots/alpha/bot"
    pid: int
    samples: tuple                # see the module docstring
    epoch: float = 0.0            # when the reporting buffer was created (a restart changes it)
    ts: float = 0.0               # wall time of the report (0: the exporter uses arrival time)
    system: str = ""              # the reporting actor system (placement.system_id): pids of
    host: str = ""                # different machines are different processes; its tgfleet.host


@dataclass(frozen=True, slots=True)
class TreeSnapshot:
    """The root's view of the tree, pushed on every lifecycle change and every second.
    `rows` are `messages.lifecycle.StatusRow`s; `ready` is true when every permanent child is
    running; `not_ready` lists the paths that keep it false (shown by `/readyz`)."""
    rows: tuple
    ready: bool
    not_ready: tuple = ()
    ts: float = 0.0


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """Where `/metrics` is served: sent by the exporter to its parent after it started, and as
    the answer to `MetricsEndpointRequest`."""
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class MetricsEndpointRequest:
    pass


fastpickle.install(globals())   # messages/fastpickle.py: same bytes, less work
