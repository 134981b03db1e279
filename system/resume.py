"""Never save an update state past an update the bot has not finished.

Why: a Telethon session (and a Pyrogram storage) carries the account's update state (pts,
and one pts per channel); the next client fetches what came after it (GetDifference). The backend saves the session every
`session_save_s` and at stop, and the library's state is past every update it has *received*,
including those still waiting in the bot (a reply held back by the per-chat limit waits
seconds). If the backend and its bot then die together (their group is killed, the backend is
killed and rest_for_one restarts the bot, the host goes down), the successor resumes past those
updates and they are never answered: an at-least-once hole, found by `ops/chaos` and
reproduced by tests/e2e/test_group_kill_saved_state.py.

So the saved state is lowered to the oldest update still held anywhere: in the backend actor
(not yet sent to the bot, buffered for a bot that is not attached, sent but not reported
finished), on its way from the library thread to the actor, or inside the library after it
counted it in its state (each backend's `lib_export` / `lib_close` covers that part). The
successor then fetches those again, with some finished ones (the bot's dedup skips those: at worst a duplicate inside
the dedup window, never a loss).

`Floors` maps a scope (0: the common pts; else a channel id) to the lowest pts to resume from.
"""
from __future__ import annotations

import collections

MAX_IN_TRANSIT = 10_000    # pushed, not yet seen by the actor; past this, newest are not kept
PINNED_FACTOR = 20         # that bound times this while an export is pinned (it keeps seen ones)


def add(floors: dict, resume) -> None:
    """Lower FLOORS to RESUME ((scope, pts) or None)."""
    if resume is None:
        return
    scope, pts = resume
    cur = floors.get(scope)
    if cur is None or pts < cur:
        floors[scope] = pts


def held_floors(*collections_of_updates) -> dict:
    """The floors of every update in the given iterables of IncomingMessage."""
    floors: dict = {}
    for updates in collections_of_updates:
        for update in updates:
            add(floors, getattr(update, "resume", None))
    return floors


class InTransit:
    """Updates the library thread pushed that the actor may not have seen yet.

    The library thread appends (`pushed`) and reads (`floors_after`); pins are set by the
    actor and released by either thread (one dict operation each). SEEN counts the updates the actor has taken from its inbox (FIFO, so the first SEEN
    pushes are the ones it saw). An export asks with the SEEN of the moment it took its
    snapshot of what the actor holds, and runs later on the library thread: `floors_after(seen)`
    gives the floors of every entry pushed after those. Each push forgets the entries the actor
    has seen by now (`seen_now()`: an int only the actor writes), so the deque holds what is in
    transit, a handful, not every update since the last export; but never past the SEEN of an
    export that has not read its floors yet (`pin`), or an update taken by the actor after
    that export's snapshot would be in neither (found in review: the saved state then passed
    it). Past LIMIT entries the newest are not kept (within one scope a newer entry cannot
    lower a floor an older one set), except while an export is pinned: the entries it keeps
    may be ones the actor has seen, which set no floor, so the bound is then PINNED_FACTOR
    times larger (an export lasts about a second)."""

    def __init__(self, seen_now=None, limit: int = MAX_IN_TRANSIT):
        self.count = 0
        self.limit = limit
        self.seen_now = seen_now
        self.entries: collections.deque = collections.deque()   # (push number, resume)
        self._pins: dict = {}        # pin token -> SEEN of an export not finished yet
        self._pin_no = 0

    def pin(self, seen: int) -> int:
        """Actor thread, when it takes an export's snapshot: keep what was pushed after SEEN
        until that export is over (`unpin(token)`)."""
        self._pin_no += 1
        self._pins[self._pin_no] = seen
        return self._pin_no

    def unpin(self, token: int) -> None:
        self._pins.pop(token, None)

    def _forget(self, seen: int) -> None:
        entries = self.entries
        while entries and entries[0][0] <= seen:
            entries.popleft()

    def pushed(self, resume) -> None:
        self.count += 1
        if self.entries and self.seen_now is not None:
            # SEEN first: the actor pins before it takes more, so a count that includes a
            # take made after a pin comes with that pin visible.
            limit = self.seen_now()
            pins = list(self._pins.values())
            self._forget(min(limit, *pins) if pins else limit)
        if resume is not None and len(self.entries) < (
                self.limit * PINNED_FACTOR if self._pins else self.limit):
            self.entries.append((self.count, resume))

    def floors_after(self, seen: int) -> dict:
        """The floors of what was pushed after the first SEEN updates."""
        floors: dict = {}
        for number, resume in self.entries:
            if number > seen:
                add(floors, resume)
        return floors


def point(scope, pts, count, base: dict):
    """The resume point of one message: the state just before it when its update carries a
    position (pts and a positive pts_count), else where its connection started catching up
    (BASE, by scope): the libraries hand messages fetched by GetDifference without one
    (Telethon: pts = pts_count = 0; Pyrogram's recovery: pts_count = -1), and a difference
    is fetched from at least that state. None when neither is known."""
    if isinstance(pts, int) and isinstance(count, int) and pts > 0 and count > 0:
        return (scope, pts - count)
    start = base.get(scope)
    return None if start is None else (scope, start)


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for scope, pts in b.items():
        add(out, (scope, pts))
    return out


def _lower_rows(rows, floors: dict, new_row) -> list:
    """ROWS ([scope, pts, ...]) with each pts lowered to its scope's floor; a channel scope
    with a floor but no row gets NEW_ROW(scope, floor), so the successor fetches that channel
    too (scope 0, the common state, is only ever lowered)."""
    rows = [list(r) for r in rows or ()]
    for r in rows:
        f = floors.get(r[0])
        if f is not None and r[1] is not None and f < r[1]:
            r[1] = f
    known = {r[0] for r in rows}
    rows += [new_row(scope, f) for scope, f in floors.items() if scope != 0 and scope not in known]
    return rows


def clamp_telethon_body(body: dict, floors: dict) -> dict:
    """Lower the state in a Telethon session body (`_FleetSession.to_body`): `state` is
    [pts, qts, date, seq] for scope 0, `channels` is [[channel_id, pts], ...]."""
    if not floors:
        return body
    state = body.get("state")
    if state and 0 in floors and floors[0] < state[0]:
        body["state"] = [floors[0], *state[1:]]
    body["channels"] = _lower_rows(body.get("channels"), floors, lambda s, f: [s, f])
    return body


def clamp_pyrogram_body(body: dict, floors: dict) -> dict:
    """The same for a Pyrogram storage body (`pyrogram_backend.export_storage`): `states` is
    [[id, pts, qts, date, seq], ...] with id 0 for the common state and the channel's id (as
    Pyrogram stores it) otherwise."""
    if not floors:
        return body
    body["states"] = _lower_rows(body.get("states"), floors,
                                 lambda s, f: [s, f, None, None, None])
    return body
