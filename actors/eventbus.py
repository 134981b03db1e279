"""EventBus: publish/subscribe between bots, by topic.

Why an actor: bots live in different processes (one per actor on the TCP base) and must not
know each other's addresses; a bot publishes an event to a topic and every bot subscribed to
that topic gets it, whoever and wherever they are. Also why it is small: the bus only routes.

Protocol (messages/backend.py):
- `SubscribeTopics(subscriber, topics)` from the subscriber itself: its address is the sender.
  It SETS the subscriber's topics (replacing the previous set), so a bot restarted with a new
  config that re-sends its full set cannot keep stale topics. '*' subscribes to every topic.
- `UnsubscribeAll(subscriber)`: forget it (a bot sends it from `on_stop`).
- `PublishEvent(topic, payload, source)` -> `BusEvent(topic, payload, source)` to every
  subscriber of `topic` and of '*', except the subscriber named `source` (no echo to the
  publisher).
- `BotStatsRequest` -> `BotStats(bot="eventbus")` with the counters below.

Bounded: at most `max_subscribers` subscribers, `max_topics` distinct subscribed topics and
`max_topics_per_subscriber` topics each; a subscription past a bound is refused (logged and
counted), never grown. The per-topic publish counter (a metric label) is kept for at most
`max_topics` topics, the rest are counted under "_other".

A crashed bot that never unsubscribed leaves its old address until its restart re-subscribes
under the same name (which replaces it); sends to the dead address go to thespian's dead letters.
Args: max_topics (1000), max_subscribers (1000), max_topics_per_subscriber (100).
"""
from __future__ import annotations

from collections import Counter

from actors.base import FleetActor
from messages.backend import BusEvent, PublishEvent, SubscribeTopics, UnsubscribeAll
from messages.bot import BotStats, BotStatsRequest
from system.metrics_client import MetricsBuffer

ALL = "*"
OTHER_TOPIC = "_other"


class EventBus(FleetActor):
    kind = "eventbus"

    def on_start(self, args):
        self.max_topics = int(args.get("max_topics", 1000))
        self.max_subscribers = int(args.get("max_subscribers", 1000))
        self.max_per_sub = int(args.get("max_topics_per_subscriber", 100))
        if min(self.max_topics, self.max_subscribers, self.max_per_sub) < 1:
            raise ValueError("eventbus: max_topics, max_subscribers and "
                             "max_topics_per_subscriber must be >= 1")
        self.subs: dict[str, tuple] = {}                 # name -> (address, frozenset(topics))
        self.topics: dict[str, dict[str, object]] = {}   # topic -> {name: address}
        self.published: Counter = Counter()              # topic (bounded) -> events published
        self.counts = Counter()                          # delivered, no_subscribers, refused...
        self.metrics = MetricsBuffer(self.path)
        if "metrics" in self.env:
            self.metrics.schedule(self)

    # ---- subscriptions -------------------------------------------------------------------
    def _remove(self, name: str):
        entry = self.subs.pop(name, None)
        if entry is None:
            return
        for topic in entry[1]:
            members = self.topics.get(topic)
            if members is not None:
                members.pop(name, None)
                if not members:
                    del self.topics[topic]

    def on_SubscribeTopics(self, msg: SubscribeTopics, sender):
        name = str(msg.subscriber)
        topics = frozenset(str(t) for t in (msg.topics or ()) if str(t))
        if len(topics) > self.max_per_sub:
            self.counts["refused"] += 1
            self.log.warning("eventbus: %s wants %d topics (max %d): refused", name,
                             len(topics), self.max_per_sub)
            return
        if name not in self.subs and len(self.subs) >= self.max_subscribers:
            self.counts["refused"] += 1
            self.log.warning("eventbus: subscriber limit %d reached: %s refused",
                             self.max_subscribers, name)
            return
        old = self.subs.get(name, (None, frozenset()))[1]
        new_topics = [t for t in topics if t not in self.topics and t not in old]
        if len(self.topics) + len(new_topics) > self.max_topics:
            self.counts["refused"] += 1
            self.log.warning("eventbus: topic limit %d reached: %s's topics %s refused",
                             self.max_topics, name, sorted(new_topics)[:10])
            return
        self._remove(name)
        if not topics:
            return
        self.subs[name] = (sender, topics)
        for topic in topics:
            self.topics.setdefault(topic, {})[name] = sender
        self.counts["subscribed"] += 1

    def on_UnsubscribeAll(self, msg: UnsubscribeAll, sender):
        self._remove(str(msg.subscriber))

    # ---- publishing ----------------------------------------------------------------------
    def on_PublishEvent(self, msg: PublishEvent, sender):
        topic = str(msg.topic)
        label = topic if (topic in self.published or len(self.published) < self.max_topics) \
            else OTHER_TOPIC
        self.published[label] += 1
        self.metrics.inc("tgfleet_eventbus_published_total", topic=label)
        targets = dict(self.topics.get(topic, {}))
        if topic != ALL:
            targets.update(self.topics.get(ALL, {}))
        targets.pop(msg.source, None)
        if not targets:
            self.counts["no_subscribers"] += 1
            return
        event = BusEvent(topic, msg.payload, msg.source)
        for addr in targets.values():
            self.send(addr, event)
        self.counts["delivered"] += len(targets)

    # ---- observation ---------------------------------------------------------------------
    def counters(self) -> dict:
        return {"subscribers": len(self.subs), "topics": len(self.topics),
                "published": dict(self.published), "published_total": sum(self.published.values()),
                **{k: self.counts[k] for k in ("delivered", "no_subscribers", "refused",
                                               "subscribed")}}

    def on_BotStatsRequest(self, msg: BotStatsRequest, sender):
        self.send(sender, BotStats(msg.request_id, "eventbus", self.counters()))

    def on_timer(self, name):
        if name == "metrics":
            self.metrics.tick(self)

    def on_env_update(self, msg):
        if msg.key == "metrics":
            self.metrics.schedule(self)

    def on_stop(self):
        if hasattr(self, "metrics"):
            self.metrics.flush(self)
