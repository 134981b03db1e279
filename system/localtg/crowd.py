"""The crowd: N simulated users talking to given bots at a given rate.

Why: tests, benchmarks and the demo need load that looks like real users without running
an MTProto client per user. Crowd users are server-side accounts; the server injects their
messages straight into the world (so bots receive them as pushed updates) and watches the
bots' answers: an answer is a bot message in the private chat with a crowd user that either
replies to the crowd message or contains its unique token (text "hi #c123"). The crowd
reports sent / answered / unanswered / duplicates and the send-to-answer latency.
"""
from __future__ import annotations

import asyncio
import logging
import re

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"#c(\d+)")
MAX_TRACKED = 200_000  # crowd messages remembered for matching answers (older ones expire)


def _pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


class Crowd:
    def __init__(self, server):
        self.server = server
        self.task = None
        self._listening = False
        self._reset([], [], 0.0, None, "hi")

    def _reset(self, bots, users, rate, duration, prefix):
        self.bots = list(bots)
        self.users = list(users)
        self.bot_set = set(bots)
        self.user_set = set(users)
        self.rate = rate
        self.duration = duration
        self.prefix = prefix
        self.sent = 0
        self.info: dict[int, tuple] = {}  # seq -> (t_sent, bot, user, msg_id)
        self.by_msg: dict[int, int] = {}  # crowd message id -> seq
        self.answers: dict[int, int] = {}  # seq -> number of answers
        self.latencies: list[float] = []
        self.per_bot: dict[int, dict] = {b: {"sent": 0, "answered": 0} for b in bots}
        self.unmatched = 0
        self.expired = 0
        self.errors = 0
        self.started = None
        self.stopped = None
        self._seq = 0

    # ------------------------------------------------------------------ control ------
    def start(self, bot_ids, users: int, rate_per_s: float, duration_s=None, text_prefix: str = "hi") -> dict:
        w = self.server.world
        bot_ids = [int(b) for b in bot_ids]
        for b in bot_ids:
            if not w.account(b).is_bot:
                raise ValueError("%d is not a bot" % b)
        if not bot_ids or users < 1 or rate_per_s <= 0:
            raise ValueError("need bots, users >= 1 and rate_per_s > 0")
        self.stop()
        uids = []
        for i in range(int(users)):
            name = "crowd%d" % i
            hit = w.by_username.get(name)
            if hit is not None:
                uids.append(hit[1])
            else:
                uids.append(w.create_account("user", username=name, first_name="Crowd %d" % i, simulated=True).user_id)
        self._reset(bot_ids, uids, float(rate_per_s), duration_s, text_prefix)
        if not self._listening:
            w.listeners.append(self._on_message)
            self._listening = True
        self.started = asyncio.get_running_loop().time()
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.server.accounts_file_dirty()
        return {"bots": self.bots, "users": self.users, "rate_per_s": self.rate, "duration_s": duration_s}

    def stop(self) -> dict:
        if self.task is not None:
            self.task.cancel()
            self.task = None
            self.stopped = asyncio.get_running_loop().time()
        return self.stats()

    # ------------------------------------------------------------------ loop ---------
    async def _run(self):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        nb, nu = len(self.bots), len(self.users)
        k = 0
        try:
            while True:
                now = loop.time()
                elapsed = now - t0
                if self.duration is not None and elapsed >= self.duration:
                    break
                due = int(elapsed * self.rate) + 1 - self.sent
                for _ in range(min(max(due, 0), 2000)):
                    bot = self.bots[k % nb]
                    user = self.users[(k // nb) % nu]
                    k += 1
                    self._send_one(user, bot, loop.time())
                next_t = t0 + self.sent / self.rate
                await asyncio.sleep(min(0.05, max(0.001, next_t - loop.time())))
        except asyncio.CancelledError:
            raise
        finally:
            self.stopped = loop.time()

    def _send_one(self, user: int, bot: int, now: float) -> None:
        self._seq += 1
        seq = self._seq
        text = "%s #c%d" % (self.prefix, seq)
        try:
            m, _pts = self.server.world.post_message(user, "user", bot, text)
        except Exception:  # noqa: BLE001 - keep the crowd running; count and log
            self.errors += 1
            log.exception("crowd send failed")
            return
        self.sent += 1
        self.info[seq] = (now, bot, user, m.id)
        self.by_msg[m.id] = seq
        old = self.info.pop(seq - MAX_TRACKED, None)
        if old is not None:
            self.by_msg.pop(old[3], None)
            self.expired += 1
        self.per_bot[bot]["sent"] += 1

    def _on_message(self, m) -> None:
        if m.from_id not in self.bot_set or m.peer_kind != "user" or m.peer_id not in self.user_set:
            return
        seq = self.by_msg.get(m.reply_to) if m.reply_to is not None else None
        if seq is None and m.text:
            hit = _TOKEN.search(m.text)
            if hit:
                seq = int(hit.group(1))
        info = self.info.get(seq) if seq is not None else None
        if info is None:
            self.unmatched += 1
            return
        n = self.answers.get(seq, 0)
        self.answers[seq] = n + 1
        if n == 0:
            self.latencies.append((asyncio.get_running_loop().time() - info[0]) * 1000.0)
            self.per_bot[info[1]]["answered"] += 1

    def stats(self) -> dict:
        lat = sorted(self.latencies)
        answered = len(self.answers)
        loop_time = None
        try:
            loop_time = asyncio.get_running_loop().time()
        except RuntimeError:
            pass
        end = self.stopped if (self.task is None and self.stopped) else loop_time
        return {
            "running": self.task is not None and not self.task.done(),
            "sent": self.sent,
            "answered": answered,
            "unanswered": self.sent - answered,
            "duplicates": sum(1 for v in self.answers.values() if v > 1),
            "unmatched_bot_messages": self.unmatched,
            "expired_untracked": self.expired,
            "errors": self.errors,
            "elapsed_s": (end - self.started) if (self.started and end) else 0.0,
            "latency_ms": {"p50": _pct(lat, 50), "p90": _pct(lat, 90), "p99": _pct(lat, 99),
                           "max": lat[-1] if lat else None},
            "per_bot": {str(b): dict(v) for b, v in self.per_bot.items()},
            "bots": self.bots,
            "users": self.users,
            "rate_per_s": self.rate,
        }
