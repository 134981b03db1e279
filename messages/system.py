"""Root <-> launcher conversation: the launcher (ops/run) is the root supervisor's parent."""
from __future__ import annotations

from dataclasses import dataclass
from messages import fastpickle


@dataclass(frozen=True, slots=True)
class RootExited:
    """The root is going away: after a clean stop (code 0) or an escalation (code 1)."""
    code: int
    reason: str = ""


fastpickle.install(globals())   # messages/fastpickle.py: same bytes, less work
