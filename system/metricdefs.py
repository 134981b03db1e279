"""The one registry of tgfleet's metric families.

Every metric the fleet exports is declared here: name, type, help, label names and, for
histograms, the fixed bucket bounds. `MetricsBuffer` refuses anything not declared (a
`ValueError` at the call site catches typos early), and the exporter renders exactly these.

Naming follows Prometheus conventions: the `tgfleet_` prefix, base units (seconds, bytes),
`_total` on counters, `_seconds` / `_bytes` suffixes for units.

Label values must come from bounded sets, or the number of series grows without limit:
- `actor`: an actor path of the configured tree (e.g. "root/bots/alpha/bot"); bounded by config.
- `bot`: a configured bot id.  `library`: telethon | pyrogram | tdlib.
- `handler`: a configured handler's name.  `table`: a table of the store's schema.
- `topic`: a configured event-bus topic name.
- `action`: the kind of outgoing action, snake_case of the action message class
  (send_message, edit_message, forward, delete, react, answer_callback, ...): a fixed set.
- `result`: ok | error | flood_wait | rejected | dropped | timeout.
- `reason`: never free text; map it with `reason_label()` to one of `REASONS`.
- `kind` / `state`: the supervisor's fixed sets (`ChildSpec.kind`, `Child.state`).
- `event`: a `LifecycleEvent.event` (start, started, stop, crash, exit, restart, escalation).
As a safety net the exporter keeps at most `MAX_SERIES_PER_FAMILY` series per family and shows
what it had to leave out in `tgfleet_metrics_series_over_limit{family}`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
TYPES = (COUNTER, GAUGE, HISTOGRAM)

# Who reports a family: any actor through a MetricsBuffer, or the exporter itself (from
# lifecycle events, tree snapshots and its own bookkeeping). A buffer refuses exporter families.
ACTOR, EXPORTER = "actor", "exporter"

MAX_SERIES_PER_FAMILY = 2000

# Histogram bounds, in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str
    help: str
    labels: tuple = ()
    buckets: tuple = ()
    origin: str = ACTOR
    # How the exporter combines one series reported by several sources: counters and
    # histograms are always summed; a gauge uses `merge` (sum | max | min).
    merge: str = "sum"
    # A gauge measuring "seconds since X" at report time: the exporter adds the seconds since
    # the report arrived, so the value is right at scrape time.
    ages: bool = False
    # Counts for the whole process, not for the actor: an actor restarted inside the same
    # process (in-process base) does not start it over, so no restart offset is added.
    per_process: bool = False

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: type must be one of {TYPES}")
        if self.type == COUNTER and not self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name ends with _total")
        if self.type != COUNTER and self.name.endswith("_total"):
            raise ValueError(f"{self.name}: only counters end with _total")
        if self.type == HISTOGRAM:
            if not self.buckets or list(self.buckets) != sorted(set(self.buckets)):
                raise ValueError(f"{self.name}: buckets must be strictly increasing")
        elif self.buckets:
            raise ValueError(f"{self.name}: only histograms have buckets")
        if "le" in self.labels or "quantile" in self.labels:
            raise ValueError(f"{self.name}: 'le' and 'quantile' are reserved label names")
        if self.merge not in ("sum", "max", "min"):
            raise ValueError(f"{self.name}: merge must be sum, max or min")

    def key(self, labels: dict) -> tuple:
        """`labels` (a dict of name -> value) as the sample's label tuple, in this family's
        label order; ValueError when the names do not match the declaration exactly."""
        names = self.labels
        if len(labels) != len(names):
            raise ValueError(f"{self.name} takes labels {names}, got {tuple(labels)}")
        if not names:
            return ()
        try:
            return tuple([(n, str(labels[n])) for n in names])
        except KeyError:
            raise ValueError(f"{self.name} takes labels {names}, got {tuple(labels)}") from None


_DEFS = (
    # ---- the tree (exporter: from TreeSnapshot and LifecycleEvent) -------------------------
    Family("tgfleet_actors", GAUGE, "Actors in the tree by kind and supervisor state.",
           ("kind", "state"), origin=EXPORTER),
    Family("tgfleet_actor_up", GAUGE, "1 while the actor at this path is running, else 0.",
           ("actor",), origin=EXPORTER),
    Family("tgfleet_ready", GAUGE, "1 when every permanent child of the tree is running.",
           origin=EXPORTER),
    Family("tgfleet_restarts_total", COUNTER, "Restarts of an actor by its supervisor, by reason.",
           ("actor", "reason"), origin=EXPORTER),
    Family("tgfleet_crashes_total", COUNTER, "Abnormal exits of an actor, by reason.",
           ("actor", "reason"), origin=EXPORTER),
    Family("tgfleet_escalations_total", COUNTER,
           "Times a supervisor exceeded its restart intensity and failed upward.",
           ("actor",), origin=EXPORTER),
    Family("tgfleet_lifecycle_events_total", COUNTER, "Lifecycle events seen, by event.",
           ("event",), origin=EXPORTER),
    # ---- bots --------------------------------------------------------------------------
    Family("tgfleet_bot_updates_total", COUNTER, "Telegram updates received by a bot.", ("bot",)),
    Family("tgfleet_bot_actions_total", COUNTER, "Actions a bot sent, by action and result.",
           ("bot", "action", "result")),
    Family("tgfleet_bot_handler_errors_total", COUNTER, "Exceptions raised by a bot's handlers.",
           ("bot", "handler")),
    Family("tgfleet_bot_dedup_hits_total", COUNTER, "Updates dropped as duplicates.", ("bot",)),
    Family("tgfleet_bot_queue_depth", GAUGE, "Updates waiting in a bot's queue.", ("bot",)),
    Family("tgfleet_bot_queue_drops_total", COUNTER, "Updates dropped because the queue was full.",
           ("bot",)),
    Family("tgfleet_bot_last_update_age_seconds", GAUGE,
           "Seconds since the bot received its last update.", ("bot",), merge="min", ages=True),
    Family("tgfleet_e2e_latency_seconds", HISTOGRAM,
           "From an update received to the action it caused sent.", ("bot",),
           buckets=LATENCY_BUCKETS),
    # ---- backends ----------------------------------------------------------------------
    Family("tgfleet_backend_connected", GAUGE, "1 while the backend's session is connected.",
           ("bot", "library"), merge="max"),
    Family("tgfleet_backend_requests_in_flight", GAUGE, "Requests sent and not yet answered.",
           ("bot",)),
    Family("tgfleet_backend_reconnects_total", COUNTER, "Reconnections of the backend's session.",
           ("bot",)),
    Family("tgfleet_circuit_state", GAUGE, "Circuit breaker: 0 closed, 1 half-open, 2 open.",
           ("bot",), merge="max"),
    Family("tgfleet_retries_total", COUNTER, "Requests retried after a transient error.",
           ("bot",)),
    # ---- rate limiter ------------------------------------------------------------------
    Family("tgfleet_ratelimit_grants_total", COUNTER, "Send permits granted.", ("bot",)),
    Family("tgfleet_ratelimit_wait_seconds", HISTOGRAM, "How long a send waited for its permit.",
           ("bot",), buckets=WAIT_BUCKETS),
    Family("tgfleet_flood_waits_total", COUNTER, "FLOOD_WAIT / retry_after answers from Telegram.",
           ("bot",)),
    Family("tgfleet_flood_penalty_seconds_total", COUNTER,
           "Penalty seconds imposed by FLOOD_WAIT answers.", ("bot",)),
    # ---- store -------------------------------------------------------------------------
    Family("tgfleet_store_write_seconds", HISTOGRAM, "Duration of a store write transaction.",
           buckets=STORE_BUCKETS),
    Family("tgfleet_store_rows", GAUGE, "Rows per table of the store.", ("table",)),
    # ---- event bus ---------------------------------------------------------------------
    Family("tgfleet_eventbus_published_total", COUNTER, "Events published on the bus, by topic.",
           ("topic",)),
    # ---- processes (added to every report by MetricsBuffer) -----------------------------
    Family("tgfleet_process_resident_memory_bytes", GAUGE,
           "Resident memory of the process the actor runs in.", ("actor",)),
    Family("tgfleet_process_cpu_seconds_total", COUNTER,
           "User + system CPU seconds of the process the actor runs in.", ("actor",),
           per_process=True),
    Family("tgfleet_process_proportional_memory_bytes", GAUGE,
           "Proportional set size (PSS) of the process the actor runs in: its private pages "
           "plus its share of the pages it shares with other processes.", ("actor",)),
    Family("tgfleet_fleet_resident_memory_bytes", GAUGE,
           "Resident memory of all actor processes, each process counted once.", origin=EXPORTER),
    Family("tgfleet_fleet_proportional_memory_bytes", GAUGE,
           "Proportional set size (PSS) of all actor processes, each process counted once: the "
           "memory the fleet really uses, shared and merged pages counted once in all.",
           origin=EXPORTER),
    Family("tgfleet_fleet_processes", GAUGE, "Distinct processes that report metrics.",
           origin=EXPORTER),
    Family("tgfleet_host_resident_memory_bytes", GAUGE,
           "Resident memory of all actor processes on one host of the fleet (its system.host; "
           "'(leader)' when the leader has none), each process counted once.", ("host",),
           origin=EXPORTER),
    # ---- the exporter itself -----------------------------------------------------------
    Family("tgfleet_metrics_sources", GAUGE, "Actors whose latest report is kept.",
           origin=EXPORTER),
    Family("tgfleet_metrics_reports_total", COUNTER, "Metrics reports received.", origin=EXPORTER),
    Family("tgfleet_metrics_invalid_samples_total", COUNTER,
           "Reported samples ignored: unknown family, wrong labels or wrong shape.",
           origin=EXPORTER),
    Family("tgfleet_metrics_sources_dropped_total", COUNTER,
           "Sources dropped after they stopped reporting for the stale period.", origin=EXPORTER),
    Family("tgfleet_metrics_series_over_limit", GAUGE,
           "Series left out at the last scrape because a family reached its series limit.",
           ("family",), origin=EXPORTER),
    Family("tgfleet_metrics_scrapes_total", COUNTER, "Scrapes of /metrics served.",
           origin=EXPORTER),
)

FAMILIES: dict[str, Family] = {f.name: f for f in _DEFS}
if len(FAMILIES) != len(_DEFS):
    raise RuntimeError("duplicate metric family name in system.metricdefs")


def family(name: str) -> Family:
    """The declared family called `name`; ValueError for an unknown name."""
    fam = FAMILIES.get(name)
    if fam is None:
        raise ValueError(f"unknown metric family {name!r} (declare it in system/metricdefs.py)")
    return fam


# ---- bounded reasons ----------------------------------------------------------------------
REASONS = ("crash", "hung", "start_timeout", "stop_timeout", "requested", "escalation", "other")

_AFTER = re.compile(r"^after [0-9.]+s:\s*")
_EXC = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Timeout|Failure|Warning)\b")


def reason_label(text: str) -> str:
    """Map a free-text reason (a supervisor's `last_error`, a LifecycleEvent reason such as
    "after 0.052s: RuntimeError: boom") to one of `REASONS`, so label values stay bounded."""
    t = _AFTER.sub("", (text or "").strip()).lower()
    if not t:
        return "other"
    if t.startswith("escalation") or "intensity" in t:
        return "escalation"
    if t.startswith("hung") or ("missed" in t and "probe" in t):
        return "hung"
    if t.startswith("start timeout") or t.startswith("start_timeout"):
        return "start_timeout"
    if t.startswith("stop timeout") or t.startswith("stop_timeout"):
        return "stop_timeout"
    if t.startswith("requested") or t == "supervisor":
        return "requested"
    if (t.startswith(("process exited", "exited during start", "crash", "killed"))
            or _EXC.match(_AFTER.sub("", text.strip()))):
        return "crash"
    return "other"
