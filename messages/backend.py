"""Bot <-> backend <-> rate limiter <-> event bus conversations.

The backend owns one Telegram session; the bot owns the handler pipeline and the bounded queue of
actions waiting for a rate-limit grant. Everything on the hot path travels in batches: one
`UpdateBatch` (messages/telegram.py) carries many updates, one `ActionBatch` many sends, one
`GrantRequest` asks for many chats at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from messages import fastpickle


# ---- bot <-> backend ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AttachBot:
    """Bot -> its backend (sibling in the BotGroup): send my updates to me from now on."""
    bot: str


@dataclass(frozen=True, slots=True)
class UpdatesDone:
    """Bot -> its backend: these updates (`messages.telegram.update_key`) are finished: every
    action they caused is done (sent, or dropped and counted), or they needed none. Until then
    the backend keeps them, and if the bot dies it gives them to the next bot: an update the
    dead bot had not finished is handled again (its dedup key tells a duplicate), never lost."""
    bot: str
    keys: tuple


@dataclass(frozen=True, slots=True)
class DetachBot:
    """BotGroup -> backend: the bot at `address` crashed or exited. Hold its updates (in the
    bounded buffer) until the next AttachBot instead of sending them to a dead address."""
    address: object


@dataclass(frozen=True, slots=True)
class ActionBatch:
    """Bot -> backend: granted actions to execute, many in flight at once inside one client.
    items: tuple of (action_id: str, action: messages.telegram.Action)."""
    bot: str
    items: tuple


@dataclass(frozen=True, slots=True)
class ActionResult:
    action_id: str
    ok: bool
    error_kind: str = ""          # flood_wait | network | timeout | rpc_fatal | peer_invalid
    error: str = ""
    flood_wait_s: float = 0.0
    message_ids: tuple = ()
    sent_at: float = 0.0          # time.time() when Telegram confirmed


@dataclass(frozen=True, slots=True)
class ActionResults:
    """Backend -> bot: the outcome of actions, batched."""
    bot: str
    results: tuple                # tuple[ActionResult, ...]


@dataclass(frozen=True, slots=True)
class BackendState:
    """Backend -> bot (on change and periodically): what the session is doing."""
    bot: str
    connected: bool
    authorized: bool
    login_state: str = ""         # ready | awaiting_code | connecting | failed:<why>
    self_id: int = 0
    library: str = ""
    lane: str = ""                # where the bot may connect a lane (system/lane.py), or ""
    lane_token: str = ""          # what the bot says first on it


# ---- login through ctl ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProvideLoginCode:
    request_id: str
    code: str
    password: str = ""


@dataclass(frozen=True, slots=True)
class LoginStatusRequest:
    request_id: str


@dataclass(frozen=True, slots=True)
class LoginStatus:
    request_id: str
    state: str                    # ready | awaiting_code | connecting | failed:<why>
    phone: str = ""
    error: str = ""


# ---- bot <-> rate limiter ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GrantRequest:
    """wants: tuple of (chat_id, chat_kind, n). One request covers a bot's whole queue.
    Leases (see `system.ratelimit_policy.RateLimitPolicy.lease`): `used` is what the bot sent on
    its lease since its last request, as (chat_id, chat_kind, n); `returned` the lease tokens it
    gives back unspent (it holds no lease while a request is out); `lease` how many it would
    like for the next period (0: none)."""
    bot: str
    wants: tuple
    account_kind: str = "bot"
    used: tuple = ()
    returned: int = 0
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Grant:
    """allowed: tuple of (chat_id, chat_kind, n); retry_in: seconds until more can be granted.
    `lease` account tokens the bot may spend on its own within `lease_s` seconds, each on a
    private chat it has not sent to (nor seen penalized) for `quiet_s` seconds."""
    bot: str
    allowed: tuple
    retry_in: float
    lease: int = 0
    lease_s: float = 0.0
    quiet_s: float = 0.0


@dataclass(frozen=True, slots=True)
class FloodWaitReport:
    """Telegram answered FLOOD_WAIT_X: put the penalty on the right key (chat, or the bot)."""
    bot: str
    chat_id: Optional[int]
    chat_kind: str
    seconds: float


# ---- event bus --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SubscribeTopics:
    subscriber: str
    topics: tuple


@dataclass(frozen=True, slots=True)
class UnsubscribeAll:
    subscriber: str


@dataclass(frozen=True, slots=True)
class PublishEvent:
    topic: str
    payload: dict
    source: str


@dataclass(frozen=True, slots=True)
class BusEvent:
    topic: str
    payload: dict
    source: str


fastpickle.install(globals())   # messages/fastpickle.py: same bytes, less work
