"""Addresses of actors hosted inside another actor's process, and the envelope that reaches them.

thespian gives one address per OS process on the processes base. An actor hosted in another
actor's process (actors/hosted.py) therefore has no thespian address of its own: it has a
`HostedAddress`, and what is sent to it goes to its host wrapped in `Routed`.

- A `HostedAddress` with a `host` (the real address of the process it lives in) can be used by
  any actor anywhere: `FleetActor.send` sends `Routed(target, msg)` to the host, which hands
  `msg` to the hosted actor.
- What a hosted actor sends to a real actor leaves as `Routed(None, msg, source)`: the receiver
  (any FleetActor) handles `msg` as if `source` had sent it, so its answer goes back the same
  way. Without that every answer would reach the host, which could not tell whose it is.
- A hosted address without a host (a bot group hosted in the bots supervisor) is known only in
  its host's process; nothing outside ever sends to it.
"""
from __future__ import annotations

from dataclasses import dataclass

from thespian.actors import ActorAddress

from messages import fastpickle


class HostedAddress(ActorAddress):
    """The address of a hosted actor, unique per incarnation. An ActorAddress (thespian's
    `send` accepts nothing else) that never reaches thespian's transport as a target: the host
    delivers it. Unlike thespian's own addresses it is hashable (hosts keep actors by it)."""

    def __init__(self, path: str, seq: int | str, host: ActorAddress | None = None):
        where = f"@{host.addressDetails}" if host is not None else ""
        super().__init__(f"hosted:{path}#{seq}{where}")
        self.path = path
        self.host = host

    def __hash__(self):
        return hash(self.addressDetails)


@dataclass(frozen=True, slots=True)
class Routed:
    """MSG for the hosted actor TARGET (None: for the receiving actor itself), sent by SOURCE
    (None: the thespian sender), which may be a hosted actor too."""
    target: HostedAddress | None
    msg: object
    source: HostedAddress | None = None


fastpickle.install(globals())   # messages/fastpickle.py: same bytes, less work
